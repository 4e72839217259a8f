"""Pipecat as a user would deploy it instead of the gateway, for ``bench.calls``.

One Pipecat pipeline per call: ``SmallWebRTCTransport.input() -> OpenAIRealtimeLLMService ->
SmallWebRTCTransport.output()``, the Realtime service's ``base_url`` pointed at the bench's
echo upstream. The transport decodes the caller's Opus (aiortc), resamples 48 kHz stereo to
24 kHz mono (PyAV) into ``InputAudioRawFrame``s; the service sends each as an
``input_audio_buffer.append``; each ``response.output_audio.delta`` comes back as a
``TTSAudioRawFrame`` that the output transport chunks (40 ms) and queues to its
``RawAudioTrack`` (10 ms frames, which aiortc resamples to 48 kHz and encodes).

Pipecat's defaults are kept (RTVI processor and observer, turn tracking, the service's
default session); not used: context aggregators, a VAD analyzer, STT/TTS (the echo upstream
is the "model"). Loguru logs at INFO, not Pipecat's default DEBUG.

Signalling is Pipecat's own: ``POST /api/offer`` with ``{"sdp", "type"}`` JSON, answered with
``{"sdp", "type", "pc_id"}`` (what its ``SmallWebRTCRequestHandler`` and JS client speak; served
here with aiohttp, which Pipecat already depends on, instead of its FastAPI runner).
``GET /metrics`` exports the gateway's event-loop lag histogram under the gateway's name, so
``bench.calls`` reads this server as it reads the others.

Runs in its own venv (``make bench-pipecat-venv``: ``bench/requirements-pipecat.txt``), not
the project's: ``python -m bench.pipecat_server --port P --upstream ws://.../v1/realtime``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web
from loguru import logger
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.workers.runner import WorkerRunner
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest

from bench.lag_probe import start_lag_probe
from gateway.obs.metrics import LAG_BUCKETS

REG = CollectorRegistry()
LAG = Histogram("gateway_event_loop_lag_seconds", "loop lag", buckets=LAG_BUCKETS, registry=REG)
UPSTREAM = web.AppKey("upstream", str)
BOTS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("bots")
#: The rate the Realtime API speaks; the pipeline runs at it both ways (no extra resampling
#: in the service), as the naive relay and the gateway do.
RATE = 24_000


async def run_bot(connection: SmallWebRTCConnection, upstream: str) -> None:
    """One call: the pipeline runs until the caller goes away (or the server stops)."""
    transport = SmallWebRTCTransport(
        connection, TransportParams(audio_in_enabled=True, audio_out_enabled=True))
    llm = OpenAIRealtimeLLMService(
        api_key="bench", base_url=upstream,
        settings=OpenAIRealtimeLLMService.Settings(model="gpt-realtime"))
    worker = PipelineWorker(
        Pipeline([transport.input(), llm, transport.output()]),
        params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE))

    async def gone(_transport: Any, _client: Any) -> None:
        await worker.cancel()

    transport.add_event_handler("on_client_disconnected", gone)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


def spawn(app: web.Application, coro: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(coro)
    app[BOTS].add(task)
    task.add_done_callback(app[BOTS].discard)


async def offer(request: web.Request) -> web.Response:
    body = await request.json()
    connection = SmallWebRTCConnection()
    await connection.initialize(sdp=body["sdp"], type=body.get("type", "offer"))
    spawn(request.app, run_bot(connection, request.app[UPSTREAM]))
    answer: Callable[[], dict[str, str] | None] = connection.get_answer  # unannotated upstream
    return web.json_response(answer())


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REG), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    app[BOTS] = set()
    stop_probe = start_lag_probe(LAG)  # the gateway's own lag probe
    yield
    stop_probe()
    running = app[BOTS]
    bots = list(running)
    for task in bots:
        task.cancel()
    await asyncio.gather(*bots, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipecat_server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="ws://host:port/v1/realtime")
    p.add_argument("--log-level", default="INFO", help="loguru level (Pipecat's default: DEBUG)")
    args = p.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level=args.log_level)
    app = web.Application()
    app[UPSTREAM] = args.upstream
    app.cleanup_ctx.append(lifecycle)
    app.add_routes([web.post("/api/offer", offer), web.get("/metrics", metrics)])
    web.run_app(app, host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
