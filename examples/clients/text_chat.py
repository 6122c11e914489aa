"""Minimal voice-agent client: sends one text message and prints the transcripts of the reply.

    pip install websockets
    python3 text_chat.py ws://localhost:8080/ws "Hello there"
"""

import asyncio
import json
import sys

import websockets


async def main(url: str, text: str) -> None:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "bidi_text_input", "text": text, "role": "user"}))
        audio_chunks = 0
        async for message in ws:
            event = json.loads(message)
            kind = event["type"]
            if kind == "bidi_audio_stream":
                audio_chunks += 1
            elif kind == "bidi_transcript_stream" and event["is_final"]:
                print(f'{event["role"]}: {event["text"]}')
            elif kind == "bidi_error":
                print(f'error {event["code"]}: {event["message"]}', file=sys.stderr)
            elif kind == "bidi_response_complete":
                print(f"({audio_chunks} audio chunks, {event['stop_reason']})")
                return


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://localhost:8080/ws",
                     sys.argv[2] if len(sys.argv) > 2 else "Hello!"))
