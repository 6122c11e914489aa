"""The prototype stack as the benchmark's peer: one Strands `BidiAgent` per WebSocket connection,
behind a `websockets` server, in one asyncio process, the way a Strands user writes a voice
server. Each agent talks to Nova Sonic through Strands' own `BedrockNovaSonicModel` (the Python
AWS SDK over TLS and HTTP/2); the benchmark points it at the Bedrock-wire fake.

Wire (what voice-bench's load generator speaks, and what voice-agent speaks with
`?protocol=strands-1.62`): binary PCM frames or `bidi_audio_input` JSON events in (16 kHz PCM16
mono), `bidi_text_input` for typed turns; out, every event the agent yields, serialized as JSON
as it is (`bidi_connection_start`, `bidi_response_start`, `bidi_audio_delta`, ...): the Strands
1.62 schema. Nothing here is tuned for the benchmark.

Strands passes the SDK an explicit endpoint (`https://bedrock-runtime.<region>.amazonaws.com`),
so `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` does not reach it: `--endpoint` replaces the config class
the model resolves with one that sets the fake's endpoint (the same patch as
tests/strands/bidi_conversation.py, see docs/bedrock.md). The fake's CA comes from
`SSL_CERT_FILE`, credentials from the usual AWS environment variables.

Prints {"listening": "host:port"} on stdout once it accepts connections.
"""

import argparse
import asyncio
import base64
import binascii
import json
import logging

import strands.bidi.models.bedrock as nova
from strands.bidi import BidiAgent
from strands.bidi.models.bedrock import BedrockNovaSonicModel
from strands.bidi.types.media import AudioDelta
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

# voice-agent's default websocket.maxMessageBytes.
MAX_MESSAGE_BYTES = 262144
SYSTEM_PROMPT = "You are the benchmark agent."


def redirect_to(endpoint: str) -> None:
    """Points BedrockNovaSonicModel at `endpoint` instead of the public Bedrock endpoint."""

    class FakeEndpointConfig(nova.AsyncBedrockRuntimeConfig):
        @classmethod
        async def resolve(cls, **kwargs):
            kwargs["endpoint_uri"] = endpoint
            return await super().resolve(**kwargs)

    nova.AsyncBedrockRuntimeConfig = FakeEndpointConfig


def user_input(message):
    """What the client sent, as BidiAgent input; None for anything it does not take."""
    if isinstance(message, bytes):
        return AudioDelta(format="pcm", source={"bytes": message})
    event = json.loads(message)
    if event.get("type") == "bidi_audio_input":
        return AudioDelta(format="pcm", source={"bytes": base64.b64decode(event["audio"], validate=True)})
    if event.get("type") == "bidi_text_input":
        return str(event["text"])
    return None


async def forward_events(agent: BidiAgent, ws) -> None:
    async for event in agent.receive():
        await ws.send(json.dumps(event, default=str))


def serve_sessions(model_id: str, region: str):
    async def session(ws) -> None:
        model = BedrockNovaSonicModel(
            model_id=model_id,
            region=region,
            audio={"input": {"sample_rate": 16000}, "output": {"sample_rate": 24000}},
        )
        agent = BidiAgent(model=model, system_prompt=SYSTEM_PROMPT)
        await agent.start()
        events = asyncio.create_task(forward_events(agent, ws))
        try:
            async for message in ws:
                try:
                    item = user_input(message)
                except (ValueError, KeyError, TypeError, binascii.Error):
                    await ws.close(1007, "invalid input event")
                    return
                if item is not None:
                    await agent.send(item)
        except ConnectionClosed:
            pass
        finally:
            events.cancel()
            await agent.stop()

    return session


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port")
    parser.add_argument("--endpoint", required=True, help="the Bedrock endpoint (the fake's URL)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--model-id", default="amazon.nova-2-5-sonic")
    args = parser.parse_args()
    # Strands logs every session start at INFO; a server under load keeps warnings only.
    logging.basicConfig(level=logging.WARNING)
    redirect_to(args.endpoint)
    host, port = args.listen.rsplit(":", 1)
    handler = serve_sessions(args.model_id, args.region)
    async with serve(handler, host, int(port), compression=None, max_size=MAX_MESSAGE_BYTES) as server:
        address = server.sockets[0].getsockname()
        print(json.dumps({"listening": f"{address[0]}:{address[1]}"}), flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
