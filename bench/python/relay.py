"""The benchmark's Python peer: a voice relay built the way prototypes are (asyncio and the
`websockets` library), serving the part of the agent's client protocol the benchmark drives,
over the same zero-cost loopback model.

Per connection, like the agent: `bidi_connection_start` first; binary PCM or `bidi_audio_input`
JSON in; a bounded queue to a model task that returns every input frame as reply audio; a bounded
queue to a writer that sends raw PCM (`?audio_output=binary`) or `bidi_audio_stream` JSON. Audio
that does not fit a full queue is dropped, never buffered without bound.

Prints {"listening": "host:port"} on stdout once it accepts connections.
"""

import argparse
import asyncio
import base64
import json
import sys
import uuid
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

# The agent's queue sizes (agent/src/model/mod.rs, agent/src/session/task.rs).
MODEL_INPUT_QUEUE = 16
OUTBOUND_QUEUE = 64
# The agent's default websocket.maxMessageBytes.
MAX_MESSAGE_BYTES = 262144
INPUT_SAMPLE_RATE = 16000
OUTPUT_SAMPLE_RATE = 24000


async def loopback_model(inbox: asyncio.Queue, outbox: asyncio.Queue) -> None:
    """A model that costs nothing: every input frame comes straight back as reply audio."""
    while True:
        pcm = await inbox.get()
        try:
            outbox.put_nowait(pcm)
        except asyncio.QueueFull:
            pass  # the client is too far behind: drop, as the agent does


async def write_replies(ws, outbox: asyncio.Queue, binary: bool) -> None:
    while True:
        pcm = await outbox.get()
        if binary:
            await ws.send(pcm)
        else:
            await ws.send(
                json.dumps(
                    {
                        "type": "bidi_audio_stream",
                        "audio": base64.b64encode(pcm).decode("ascii"),
                        "format": "pcm",
                        "sample_rate": OUTPUT_SAMPLE_RATE,
                        "channels": 1,
                    }
                )
            )


def decode_audio(message) -> bytes | None:
    """PCM from a binary frame or a bidi_audio_input event; None for anything else."""
    if isinstance(message, bytes):
        return message
    event = json.loads(message)
    if event.get("type") != "bidi_audio_input":
        return None
    return base64.b64decode(event["audio"], validate=True)


async def session(ws) -> None:
    query = parse_qs(urlsplit(ws.request.path).query)
    audio_output = query.get("audio_output", ["json"])[0]
    if audio_output not in ("json", "binary"):
        await ws.close(1008, "audio_output must be json or binary")
        return
    await ws.send(
        json.dumps(
            {
                "type": "bidi_connection_start",
                "connection_id": str(uuid.uuid4()),
                "model": "simulated-loopback",
                "input_sample_rate": INPUT_SAMPLE_RATE,
                "output_sample_rate": OUTPUT_SAMPLE_RATE,
                "audio_output": audio_output,
            }
        )
    )
    inbox: asyncio.Queue = asyncio.Queue(MODEL_INPUT_QUEUE)
    outbox: asyncio.Queue = asyncio.Queue(OUTBOUND_QUEUE)
    model = asyncio.create_task(loopback_model(inbox, outbox))
    writer = asyncio.create_task(write_replies(ws, outbox, audio_output == "binary"))
    try:
        async for message in ws:
            try:
                pcm = decode_audio(message)
            except (ValueError, KeyError, TypeError):
                await ws.close(1007, "invalid audio event")
                return
            if pcm is None:
                continue
            if len(pcm) % 2:
                await ws.close(1007, "audio is not whole 16-bit samples")
                return
            try:
                inbox.put_nowait(pcm)
            except asyncio.QueueFull:
                pass
    except ConnectionClosed:
        pass
    finally:
        model.cancel()
        writer.cancel()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    # No compression and a message limit, as the websockets FAQ advises for a fair comparison
    # (the agent does not compress either).
    async with serve(session, host, int(port), compression=None, max_size=MAX_MESSAGE_BYTES) as server:
        address = server.sockets[0].getsockname()
        print(json.dumps({"listening": f"{address[0]}:{address[1]}"}), flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        sys.argv.remove("--uvloop")
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
