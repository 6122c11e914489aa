"""A scripted conversation held by Strands 1.62 itself (`BidiAgent` with `BedrockNovaSonicModel`,
the real `strands-agents` package) against the workspace's Bedrock fake, printing every event
Strands yields as one JSON line, so a test can compare them with what the voice agent sends for
the same conversation, and with what the fake must accept from a client it did not write.

The script (the same one the Rust side plays against the agent), in 32 ms frames of 16 kHz
PCM16, microphone style (silence whenever nothing else is sent):
  1. a spoken turn (`spoken.pcm`), until the 1st `bidi_response_stop`;
  2. a typed turn, until the 2nd;
  3. a typed turn that calls the `get_weather` tool, until the 3rd;
  4. a spoken turn (`long.pcm`); once its reply audio flows, speech over it (`barge.pcm`),
     until the 5th (the interrupted reply, then the reply to the interruption);
  5. a second of silence, then a clean stop (`promptEnd` and Strands' `connectionEnd`).

Audio is printed as its length, not its bytes. The last line is {"done": true}.

Strands calls Bedrock at a hard-coded `https://bedrock-runtime.<region>.amazonaws.com`, passed to
the SDK as an explicit `endpoint_uri` (so `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` has no effect):
`redirect_to` swaps the config class the model resolves with one that sets the fake's endpoint.
The fake's CA comes from `SSL_CERT_FILE`, credentials from the usual AWS environment variables.
"""

import argparse
import asyncio
import base64
import json
import sys
from pathlib import Path

import strands.bidi.models.bedrock as nova
from strands import tool
from strands.bidi import BidiAgent
from strands.bidi.models.bedrock import BedrockNovaSonicModel
from strands.bidi.types.media import AudioDelta

FRAME_BYTES = 1024  # 32 ms of 16 kHz PCM16 mono
FRAME_SECONDS = 0.032
STEP_TIMEOUT_S = 60

TYPED_TURN = "What are your opening hours?"
TOOL_TURN = 'tool:get_weather {"city": "Paris"}'


def redirect_to(endpoint: str) -> None:
    """Points BedrockNovaSonicModel at `endpoint` instead of the public Bedrock endpoint."""

    class FakeEndpointConfig(nova.AsyncBedrockRuntimeConfig):
        @classmethod
        async def resolve(cls, **kwargs):
            kwargs["endpoint_uri"] = endpoint
            return await super().resolve(**kwargs)

    nova.AsyncBedrockRuntimeConfig = FakeEndpointConfig


@tool
def get_weather(city: str) -> dict:
    """Current weather in a city."""
    return {"city": city, "temperature_c": 21, "sky": "sunny"}


class Conversation:
    def __init__(self, agent: BidiAgent):
        self.agent = agent
        self.events: list[dict] = []
        self.changed = asyncio.Event()
        self.pending = bytearray()

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e.get("type") == kind)

    async def receive(self) -> None:
        async for event in self.agent.receive():
            summary = dict(event)
            if "audio" in summary:
                summary["audio"] = len(base64.b64decode(summary["audio"]))
            line = json.dumps(summary, default=str)
            print(line, flush=True)
            self.events.append(json.loads(line))
            self.changed.set()

    async def microphone(self) -> None:
        """Sends a frame every 32 ms: queued audio first, silence otherwise."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            frame = bytes(self.pending[:FRAME_BYTES]) or bytes(FRAME_BYTES)
            del self.pending[:FRAME_BYTES]
            await self.agent.send(AudioDelta(format="pcm", source={"bytes": frame}))
            next_at += FRAME_SECONDS
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def until(self, done, what: str) -> None:
        async def wait() -> None:
            while not done():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(wait(), STEP_TIMEOUT_S)
        except TimeoutError:
            sys.exit(f"timed out waiting for {what}; events: {[e.get('type') for e in self.events]}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--audio-dir", required=True, type=Path)
    parser.add_argument("--region", default="us-west-2")
    args = parser.parse_args()
    redirect_to(args.endpoint)
    audio = {name: (args.audio_dir / f"{name}.pcm").read_bytes() for name in ("spoken", "long", "barge")}

    model = BedrockNovaSonicModel(
        model_id="amazon.nova-2-5-sonic",
        region=args.region,
        audio={"input": {"sample_rate": 16000}, "output": {"sample_rate": 24000}},
    )
    agent = BidiAgent(model=model, tools=[get_weather], system_prompt="You are the test agent.")
    await agent.start()
    talk = Conversation(agent)
    receiver = asyncio.create_task(talk.receive())
    microphone = asyncio.create_task(talk.microphone())

    stops = lambda n: lambda: talk.count("bidi_response_stop") >= n  # noqa: E731
    talk.pending += audio["spoken"]
    await talk.until(stops(1), "the reply to the spoken turn")
    await agent.send(TYPED_TURN)
    await talk.until(stops(2), "the reply to the typed turn")
    await agent.send(TOOL_TURN)
    await talk.until(stops(3), "the reply after the tool call")
    talk.pending += audio["long"]
    audio_before = talk.count("bidi_audio_delta")
    await talk.until(
        lambda: talk.count("bidi_response_start") >= 4 and talk.count("bidi_audio_delta") > audio_before,
        "reply audio to barge in on",
    )
    talk.pending += audio["barge"]
    await talk.until(stops(5), "the reply after the barge-in")
    await asyncio.sleep(1.0)

    microphone.cancel()
    await agent.stop()
    receiver.cancel()
    print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
