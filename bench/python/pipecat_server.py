"""Pipecat as the benchmark's peer: its AWS Nova Sonic service behind its FastAPI WebSocket
transport, one pipeline per connection in one asyncio process (uvicorn), the way Pipecat's
examples serve several callers. The service talks to Nova Sonic through the Python AWS SDK over
TLS and HTTP/2; the benchmark points it at the Bedrock-wire fake.

Wire: the same as bench/python/strands_server.py, so the same load generator drives it — binary
PCM or `bidi_audio_input` JSON in (16 kHz PCM16 mono); out, the Strands 1.62 events the generator
reads: `bidi_connection_start` once the service streams audio to the model, `bidi_response_start`
and `bidi_response_stop` around each spoken reply, `bidi_audio_delta` for the reply audio,
`bidi_barge_in` on an interruption. Pipecat has no wire format of its own for this (its clients
speak RTVI over protobuf or a telephony provider's format); `BidiWireSerializer` is the
serializer a Pipecat user writes for their own frontend, and `ResponseEvents` turns the
service's response frames into the two boundary messages.

Pipecat builds the Bedrock client in `AWSNovaSonicLLMService.create_client()` with a hard-coded
`https://bedrock-runtime.<region>.amazonaws.com`; `FakeEndpointNovaSonic` overrides that one
method to use `--endpoint`. The fake's CA comes from `SSL_CERT_FILE`, credentials from the usual
AWS environment variables.

Prints {"listening": "host:port"} on stdout once it accepts connections.
"""

import argparse
import asyncio
import base64
import binascii
import json
import os
import socket
import sys
import uuid

import uvicorn
from aws_sdk_bedrock_runtime.client import BedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import Config
from fastapi import FastAPI, WebSocket
from loguru import logger
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMRunFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.task import PipelineParams
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.base_serializer import FrameSerializer
from pipecat.services.aws.nova_sonic.llm import AWSNovaSonicLLMService
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.workers.runner import WorkerRunner
from smithy_aws_core.auth.sigv4 import SigV4AuthScheme
from smithy_aws_core.identity.static import StaticCredentialsResolver
from smithy_core.shapes import ShapeID

INPUT_SAMPLE_RATE = 16000
OUTPUT_SAMPLE_RATE = 24000
SYSTEM_PROMPT = "You are the benchmark agent."


class FakeEndpointNovaSonic(AWSNovaSonicLLMService):
    """The Nova Sonic service with its Bedrock endpoint replaced, and a `bidi_connection_start`
    for the client once audio input to the model has started (audio sent before is dropped by
    the service, so the client waits for it)."""

    def __init__(self, *, endpoint: str, **kwargs):
        super().__init__(**kwargs)
        self._endpoint = endpoint
        self._announced = False

    def create_client(self) -> BedrockRuntimeClient:
        config = Config(
            endpoint_uri=self._endpoint,
            region=self._region,
            aws_access_key_id=self._access_key_id,
            aws_secret_access_key=self._secret_access_key,
            aws_session_token=self._session_token,
            aws_credentials_identity_resolver=StaticCredentialsResolver(),
            auth_schemes={ShapeID("aws.auth#sigv4"): SigV4AuthScheme(service="bedrock")},
        )
        return BedrockRuntimeClient(config=config)

    async def send_audio_input_start(self, prompt_name, content_name, stream):
        await super().send_audio_input_start(prompt_name, content_name, stream)
        if not self._announced:
            self._announced = True
            start = {
                "type": "bidi_connection_start",
                "connection_id": str(uuid.uuid4()),
                "model": "amazon.nova-2-5-sonic",
                "input_sample_rate": INPUT_SAMPLE_RATE,
                "output_sample_rate": OUTPUT_SAMPLE_RATE,
            }
            await self.push_frame(OutputTransportMessageUrgentFrame(message=start))


class ResponseEvents(FrameProcessor):
    """Brackets each spoken reply for the client: the service's TTS start and stop frames."""

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSStartedFrame):
            await self.push_frame(OutputTransportMessageUrgentFrame(message={"type": "bidi_response_start"}))
        await self.push_frame(frame, direction)
        if isinstance(frame, TTSStoppedFrame):
            # Queued behind the reply's audio, so it arrives after the last chunk.
            await self.push_frame(OutputTransportMessageFrame(message={"type": "bidi_response_stop"}))


class BidiWireSerializer(FrameSerializer):
    """Binary PCM or `bidi_audio_input` in; `bidi_audio_delta` and transport messages out."""

    def __init__(self, binary_output: bool):
        super().__init__()
        self._binary_output = binary_output

    async def serialize(self, frame: Frame) -> str | bytes | None:
        if self.should_ignore_frame(frame):
            return None
        if isinstance(frame, OutputAudioRawFrame):
            if self._binary_output:
                return frame.audio
            return json.dumps(
                {
                    "type": "bidi_audio_delta",
                    "audio": base64.b64encode(frame.audio).decode("ascii"),
                    "format": "pcm",
                    "sample_rate": frame.sample_rate,
                    "channels": frame.num_channels,
                    "content_id": "",
                }
            )
        if isinstance(frame, (OutputTransportMessageFrame, OutputTransportMessageUrgentFrame)):
            return json.dumps(frame.message)
        if isinstance(frame, InterruptionFrame):
            return json.dumps({"type": "bidi_barge_in"})
        return None

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes):
            pcm = data
        else:
            try:
                event = json.loads(data)
                if event.get("type") != "bidi_audio_input":
                    return None
                pcm = base64.b64decode(event["audio"], validate=True)
            except (ValueError, KeyError, TypeError, binascii.Error):
                return None
        return InputAudioRawFrame(audio=pcm, sample_rate=INPUT_SAMPLE_RATE, num_channels=1)


def build_app(endpoint: str, region: str) -> FastAPI:
    app = FastAPI()

    @app.websocket("/ws")
    async def session(websocket: WebSocket):
        await websocket.accept()
        binary_output = websocket.query_params.get("audio_output") == "binary"
        transport = FastAPIWebsocketTransport(
            websocket=websocket,
            params=FastAPIWebsocketParams(
                audio_in_enabled=True,
                audio_in_sample_rate=INPUT_SAMPLE_RATE,
                audio_out_enabled=True,
                audio_out_sample_rate=OUTPUT_SAMPLE_RATE,
                serializer=BidiWireSerializer(binary_output),
            ),
        )
        llm = FakeEndpointNovaSonic(
            endpoint=endpoint,
            secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
            region=region,
            settings=FakeEndpointNovaSonic.Settings(system_instruction=SYSTEM_PROMPT),
        )
        context = LLMContext()
        aggregators = LLMContextAggregatorPair(context)
        pipeline = Pipeline(
            [
                transport.input(),
                aggregators.user(),
                llm,
                ResponseEvents(),
                transport.output(),
                aggregators.assistant(),
            ]
        )
        worker = PipelineWorker(
            pipeline,
            params=PipelineParams(audio_in_sample_rate=INPUT_SAMPLE_RATE, audio_out_sample_rate=OUTPUT_SAMPLE_RATE),
        )

        @transport.event_handler("on_client_connected")
        async def on_client_connected(transport, client):
            # Hands the (empty) context to the service, which then opens the model's session.
            await worker.queue_frames([LLMRunFrame()])

        @transport.event_handler("on_client_disconnected")
        async def on_client_disconnected(transport, client):
            await worker.cancel()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()

    return app


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port")
    parser.add_argument("--endpoint", required=True, help="the Bedrock endpoint (the fake's URL)")
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args()
    # Pipecat logs every frame of a reply at DEBUG; a server under load keeps warnings only.
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    host, port = args.listen.rsplit(":", 1)
    # Bind first so the port is known (uvicorn does not report an ephemeral port).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    address = sock.getsockname()
    config = uvicorn.Config(build_app(args.endpoint, args.region), log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    print(json.dumps({"listening": f"{address[0]}:{address[1]}"}), flush=True)
    await serving


if __name__ == "__main__":
    asyncio.run(main())
