"""The reference "naive relay" the gateway is measured against, in the same bench run.

What anyone would write first with aiortc: per call, one peer connection and one upstream
WebSocket; inbound decoded Opus -> PyAV resample to 24 kHz mono -> one append per frame;
outbound deltas -> a byte buffer (capped at 1 s) -> a track paced to 20 ms frames. No policy,
no tokens (any bearer works), no events to the client. It exports the gateway's own loop-lag and
per-frame histograms under the same names so the bench reads both servers the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import fractions
import json
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import aiohttp
import av
from aiohttp import web
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest

from bench.lag_probe import start_lag_probe
from gateway.obs.metrics import FRAME_BUCKETS, LAG_BUCKETS

REG = CollectorRegistry()
LAG = Histogram("gateway_event_loop_lag_seconds", "loop lag", buckets=LAG_BUCKETS, registry=REG)
FRAME = Histogram("gateway_frame_processing_seconds", "per frame", ["direction"],
                  buckets=FRAME_BUCKETS, registry=REG)
FRAME_IN, FRAME_OUT = FRAME.labels("in"), FRAME.labels("out")
HTTP = web.AppKey("http", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
TASKS: set[asyncio.Task[None]] = set()


class Speaker(MediaStreamTrack):
    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.buf = bytearray()
        self.start: float | None = None
        self.i = 0

    async def recv(self) -> av.AudioFrame:
        now = time.monotonic()
        self.start = self.start or now
        due = self.start + self.i * 0.02
        if due > now:
            await asyncio.sleep(due - now)
        t0 = time.perf_counter()
        chunk = bytes(self.buf[:960]).ljust(960, b"\0")
        del self.buf[:960]
        frame = av.AudioFrame(format="s16", layout="mono", samples=480)
        frame.planes[0].update(chunk)
        frame.sample_rate, frame.pts, frame.time_base = 24000, self.i * 480, fractions.Fraction(
            1, 24000)
        self.i += 1
        FRAME_OUT.observe(time.perf_counter() - t0)
        return frame


async def mic_to_upstream(track: MediaStreamTrack, ws: aiohttp.ClientWebSocketResponse) -> None:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=24000)
    while True:
        frame = await track.recv()
        assert isinstance(frame, av.AudioFrame)
        t0 = time.perf_counter()
        for out in resampler.resample(frame):
            pcm = bytes(out.planes[0])[: out.samples * 2]
            await ws.send_str(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": base64.b64encode(pcm).decode()}))
        FRAME_IN.observe(time.perf_counter() - t0)


async def upstream_to_speaker(ws: aiohttp.ClientWebSocketResponse, speaker: Speaker) -> None:
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue
        ev = json.loads(msg.data)
        if ev["type"] == "response.output_audio.delta":
            speaker.buf += base64.b64decode(ev["delta"])
            del speaker.buf[:-48000]  # at most 1 s queued


def spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    task = asyncio.ensure_future(coro)
    TASKS.add(task)
    task.add_done_callback(TASKS.discard)
    return task


async def calls(request: web.Request) -> web.Response:
    ws = await request.app[HTTP].ws_connect(request.app[UPSTREAM] + "?model=gpt-realtime")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    speaker = Speaker()
    pc.addTrack(speaker)
    mine = [spawn(upstream_to_speaker(ws, speaker))]
    pc.on("track", lambda track: mine.append(spawn(mic_to_upstream(track, ws))))

    @pc.on("connectionstatechange")
    async def closed() -> None:
        if pc.connectionState in ("failed", "closed"):
            for t in mine:
                t.cancel()
            await ws.close()
            await pc.close()

    await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    return web.Response(status=201, text=pc.localDescription.sdp, content_type="application/sdp")


async def client_secrets(request: web.Request) -> web.Response:
    return web.json_response({"value": "ek_naive", "expires_at": 0})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REG), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    app[HTTP] = aiohttp.ClientSession()
    stop_probe = start_lag_probe(LAG)  # the gateway's own lag probe
    yield
    stop_probe()
    await app[HTTP].close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.naive_relay")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="ws://host:port/v1/realtime")
    args = p.parse_args(argv)
    app = web.Application()
    app[UPSTREAM] = args.upstream
    app.cleanup_ctx.append(lifecycle)
    app.add_routes([web.post("/v1/realtime/calls", calls),
                    web.post("/v1/realtime/client_secrets", client_secrets),
                    web.get("/metrics", metrics)])
    web.run_app(app, host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
