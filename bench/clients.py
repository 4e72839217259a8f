"""N concurrent full-duplex callers in one process, driven by ``bench.calls``.

Each caller mints a token, POSTs its SDP offer (with the ``oai-events`` data channel, as a
browser following OpenAI's WebRTC guide would), sends a tone paced in real time, and counts
the 20 ms frames it receives and how many of them carry audio (the echo upstream returns the
caller's own tone, so in steady state nearly every frame should;
:class:`bench.caller_audio.HeardAudio` judges them, the same in both modes).

Two caller modes (``--callers``), the same signalling, ICE, DTLS and data channel (aiortc):

- ``light`` (the default): once DTLS is up the call's media is
  :class:`bench.light_media.LightMedia`: one 20 ms clock for the whole process sends every
  call's pre-encoded Opus packet, received SRTP is unprotected and judged in the datagram's
  callback, on uvloop. About half the CPU of an aiortc caller (BENCHMARKS.md), so 90-100
  calls' callers fit on one core beside the echo upstream.
- ``aiortc``: aiortc's own RTCRtpSender task and track per call, its receiver loop (with a
  :class:`PacketTap` in place of its jitter buffer), asyncio's default loop.

Protocol with the driver, one JSON object a line on stdout:
``{"event": "ready", ...}`` once every call's data channel is open; then for each ``mark`` line
on stdin a ``{"event": "mark", ...}`` snapshot of cumulative counters (and the client's own
event-loop lag since the previous mark, so a saturated client shows up as such); ``stop``
closes every call and exits. Any setup failure prints ``{"event": "error"}`` and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

from gateway.legs.inbound import install_inbound
from gateway.legs.media_clock import MediaClock

from .caller_audio import FRAME, RATE, HeardAudio
from .light_media import LightMedia

TIME_BASE = fractions.Fraction(1, RATE)


def tone_frame(freq: float, dbfs: float) -> bytes:
    """One 20 ms stereo s16 frame of a tone with a whole number of cycles in it, so the same
    bytes repeat seamlessly (400 Hz: 8 cycles)."""
    cycles = freq * FRAME / RATE
    if abs(cycles - round(cycles)) > 1e-9:
        raise ValueError(f"{freq} Hz does not fit a whole number of cycles in 20 ms")
    amp = 32768 * 10 ** (dbfs / 20) * np.sqrt(2)
    mono = (amp * np.sin(2 * np.pi * freq * np.arange(FRAME) / RATE)).astype(np.int16)
    return np.repeat(mono, 2).tobytes()  # stereo, as a browser's Opus is


def pcm_frame(pcm: bytes, i: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="s16", layout="stereo", samples=FRAME)
    frame.planes[0].update(pcm)
    frame.sample_rate = RATE
    frame.pts = i * FRAME
    frame.time_base = TIME_BASE
    return frame


def opus_loop(pcm: bytes, frames: int = 50) -> list[bytes]:
    """The tone encoded once, ``frames`` Opus packets long, to be sent in a loop: the callers
    share the machine with the server under test, and a live encoder per caller would cost
    ~9 ms of CPU a second each for nothing the server can tell apart."""
    enc = OpusEncoder()
    out: list[bytes] = []
    i = 0
    while len(out) < frames:
        payloads, _ = enc.encode(pcm_frame(pcm, i))
        out += payloads
        i += 1
    return out


class ToneTrack(MediaStreamTrack):
    """The caller's microphone: the tone, paced to the wall clock like a real capture device.
    With ``packets``, it yields pre-encoded Opus (aiortc sends those as they are)."""

    kind = "audio"

    def __init__(self, pcm: bytes, packets: list[bytes] | None = None) -> None:
        super().__init__()
        self._pcm = pcm
        self._packets = packets
        self._start: float | None = None
        self.sent = 0

    async def recv(self) -> av.AudioFrame | av.Packet:  # type: ignore[type-arg]
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self.sent * 0.02
        if due > now:
            await asyncio.sleep(due - now)
        i = self.sent
        self.sent += 1
        if self._packets is None:
            return pcm_frame(self._pcm, i)
        packet = av.Packet(self._packets[i % len(self._packets)])
        packet.pts = i * FRAME
        packet.time_base = TIME_BASE
        return packet


class PacketTap:
    """Stands in for the caller's aiortc jitter buffer (as the gateway's own inbound path
    does): each arriving packet is judged right away (:class:`bench.caller_audio.HeardAudio`),
    so nothing reaches aiortc's decoder thread. The callers share the 2 cores with the server
    under test; this keeps what they take from it small."""

    capacity = 16  # aiortc's JitterBuffer interface

    def __init__(self, heard: HeardAudio) -> None:
        self._heard = heard

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self._heard.packet(packet.timestamp, packet._data)  # type: ignore[attr-defined]
        return False, None


@dataclass
class Caller:
    pc: RTCPeerConnection
    mic: ToneTrack
    #: ``--callers light``: the call's media once DTLS is up (aiortc's RTP machinery unused).
    light: LightMedia | None = None
    heard: HeardAudio = field(default_factory=HeardAudio)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    events: int = 0

    @property
    def sent(self) -> int:
        return self.light.sent if self.light is not None else self.mic.sent

    def tap(self) -> None:
        """Count and check what arrives at packet level (see :class:`PacketTap`)."""
        for t in self.pc.getTransceivers():
            if t.kind == "audio":
                install_inbound(t.receiver, PacketTap(self.heard))  # type: ignore[arg-type]

    def go_light(self, packets: list[bytes], clock: MediaClock) -> None:
        """Hand the call's media to :class:`bench.light_media.LightMedia` at connect."""
        self.light = LightMedia(self.heard, packets, clock)
        for t in self.pc.getTransceivers():
            if t.kind == "audio":
                self.light.attach(t)

    async def close(self) -> None:
        self.mic.stop()
        if self.light is not None:
            await self.light.stop()
        await self.pc.close()


async def _live_answer(http: aiohttp.ClientSession, base: str, api_key: str, sdp: str) -> str:
    """GPT-Live's WebRTC create (``client.live.create()``) with the API key."""
    async with http.post(f"{base}/v1/live/sessions", headers={
            "Authorization": f"Bearer {api_key}"}, json={
            "session": {"model": "gpt-live-1"}, "transport": {"type": "webrtc", "sdp": sdp}}) as r:
        body = await r.json()
        if r.status != 200:
            raise RuntimeError(f"live sessions: {r.status} {body}")
        return str(body["transport"]["sdp"])


async def _pipecat_answer(http: aiohttp.ClientSession, base: str, sdp: str) -> str:
    """Pipecat's SmallWebRTC signalling (its runner's and JS client's ``POST /api/offer``):
    ``{"sdp", "type"}`` JSON in, ``{"sdp", "type", "pc_id"}`` out; no token."""
    async with http.post(f"{base}/api/offer", json={"sdp": sdp, "type": "offer"}) as r:
        if r.status != 200:
            raise RuntimeError(f"api/offer: {r.status} {(await r.text())[:300]}")
        return str((await r.json())["sdp"])


async def open_call(http: aiohttp.ClientSession, base: str, api_key: str, pcm: bytes,
                    packets: list[bytes] | None, timeout_s: float, api: str = "realtime",
                    light: MediaClock | None = None) -> Caller:
    """One call. With ``light`` (the caller process's clock) its media runs on
    :class:`bench.light_media.LightMedia` (``packets`` required) instead of aiortc's."""
    if api in ("live", "pipecat"):
        return await _open(http, base, api_key, pcm, packets, timeout_s, signalling=api,
                           light=light)
    async with http.post(f"{base}/v1/realtime/client_secrets", json={},
                         headers={"Authorization": f"Bearer {api_key}"}) as r:
        body = await r.json()
        if r.status != 200:
            raise RuntimeError(f"client_secrets: {r.status} {body}")
        token = body["value"]
    return await _open(http, base, token, pcm, packets, timeout_s, signalling="realtime",
                       light=light)


async def _open(http: aiohttp.ClientSession, base: str, token: str, pcm: bytes,
                packets: list[bytes] | None, timeout_s: float, *, signalling: str,
                light: MediaClock | None) -> Caller:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    caller = Caller(pc, ToneTrack(pcm, packets))
    channel = pc.createDataChannel("oai-events")
    channel.on("open", caller.opened.set)

    def on_message(_: object) -> None:
        caller.events += 1

    channel.on("message", on_message)
    pc.addTrack(caller.mic)  # in light mode never read: it keeps the offer the same
    if light is not None:
        if packets is None:
            raise ValueError("light callers send the pre-encoded loop (no --encode-live)")
        caller.go_light(packets, light)
    else:
        caller.tap()
    try:
        await pc.setLocalDescription(await pc.createOffer())
        if signalling == "live":
            answer = await _live_answer(http, base, token, pc.localDescription.sdp)
        elif signalling == "pipecat":
            answer = await _pipecat_answer(http, base, pc.localDescription.sdp)
        else:
            async with http.post(f"{base}/v1/realtime/calls", data=pc.localDescription.sdp,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/sdp"}) as r:
                answer = await r.text()
                if r.status != 201:
                    raise RuntimeError(f"calls: {r.status} {answer[:300]}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        async with asyncio.timeout(timeout_s):
            await caller.opened.wait()
    except BaseException:
        await caller.close()
        raise
    return caller


class LagProbe:
    """This process's own event-loop lag (a timer every 100 ms, like the gateway's probe)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(0.1, self._tick, self._loop.time() + 0.1)

    def _tick(self, expected: float) -> None:
        now = self._loop.time()
        self.samples.append(max(0.0, now - expected))
        self._handle = self._loop.call_at(now + 0.1, self._tick, now + 0.1)

    def take(self) -> list[float]:
        out, self.samples = self.samples, []
        return out

    def stop(self) -> None:
        self._handle.cancel()


def quantile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


async def rtp_stats(callers: list[Caller]) -> dict[str, int]:
    """Packets the callers received/lost (inbound-rtp) and what the server reported losing of
    theirs (remote-inbound-rtp, from its RTCP receiver reports)."""
    out = {"rtp_received": 0, "rtp_lost": 0, "remote_lost": 0}
    for c in callers:
        if c.light is not None:
            for k, v in c.light.rtp_stats().items():
                out[k] += v
            continue
        with contextlib.suppress(Exception):
            for s in (await c.pc.getStats()).values():
                if s.type == "inbound-rtp":
                    out["rtp_received"] += int(s.packetsReceived)
                    out["rtp_lost"] += int(s.packetsLost)
                elif s.type == "remote-inbound-rtp":
                    out["remote_lost"] += int(s.packetsLost)
    return out


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> int:
    pcm = tone_frame(args.freq, args.dbfs)
    packets = None if args.encode_live else opus_loop(pcm)
    clock = MediaClock() if args.callers == "light" else None  # this process's one clock
    probe = LagProbe()
    callers: list[Caller] = []
    gate = asyncio.Semaphore(args.setup_concurrency)
    t0 = time.monotonic()

    async def one() -> Caller:
        async with gate:
            return await open_call(http, args.base, args.api_key, pcm, packets,
                                   args.setup_timeout, args.api, clock)

    # A connection per request, as independent browsers would open: behind ``serve --workers
    # N`` the kernel spreads connections, not requests, over the workers.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        results = await asyncio.gather(*(one() for _ in range(args.calls)),
                                       return_exceptions=True)
        callers = [r for r in results if isinstance(r, Caller)]
        errors = [r for r in results if not isinstance(r, Caller)]
        if errors:
            emit({"event": "error", "message": f"{len(errors)} of {args.calls} calls failed: "
                  f"{errors[0]!r}"})
            await asyncio.gather(*(c.close() for c in callers), return_exceptions=True)
            return 1
        emit({"event": "ready", "calls": len(callers), "setup_s": time.monotonic() - t0})
        probe.take()
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            cmd = line.strip()
            if cmd == "mark":
                t = time.monotonic()
                lag = probe.take()
                emit({"event": "mark", "t": t, "calls": len(callers),
                      "sent": sum(c.sent for c in callers),
                      "received": sum(c.heard.received for c in callers),
                      "loud": sum(c.heard.loud for c in callers),
                      "undecodable": sum(c.heard.undecodable for c in callers),
                      "events": sum(c.events for c in callers),
                      "skipped": sum(c.heard.skipped for c in callers),
                      "late_max_ms": 1000 * max((c.heard.take_late() for c in callers),
                                                default=0.0),
                      "not_connected": sum(c.pc.connectionState != "connected" for c in callers),
                      "lag_p50": quantile(lag, 0.5), "lag_p99": quantile(lag, 0.99),
                      "lag_max": max(lag, default=None), **(await rtp_stats(callers))})
            elif cmd in ("stop", ""):  # "" is EOF: the driver went away
                break
        probe.stop()
        await asyncio.gather(*(c.close() for c in callers), return_exceptions=True)
    emit({"event": "done"})
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.clients")
    p.add_argument("--base", required=True, help="http://host:port of the server under test")
    p.add_argument("--api-key", default="bench-key")
    p.add_argument("--calls", type=int, required=True)
    p.add_argument("--freq", type=float, default=400.0)
    p.add_argument("--dbfs", type=float, default=-20.0)
    p.add_argument("--encode-live", action="store_true",
                   help="encode the tone per caller, as a browser does (costs the client CPU)")
    p.add_argument("--setup-concurrency", type=int, default=4)
    p.add_argument("--api", choices=("realtime", "live", "pipecat"), default="realtime",
                   help="open calls over the Realtime API, GPT-Live (POST /v1/live/sessions) "
                        "or Pipecat's SmallWebRTC signalling (POST /api/offer)")
    p.add_argument("--setup-timeout", type=float, default=20.0)
    p.add_argument("--callers", choices=("light", "aiortc"), default="light",
                   help="light: aiortc sets the call up (signalling, ICE, DTLS, data channel), "
                        "then one 20 ms clock for the process sends every call's RTP and the "
                        "received SRTP is judged without aiortc (bench/light_media.py), on "
                        "uvloop; aiortc: aiortc's own sender and receiver per call")
    args = p.parse_args(argv)
    if args.callers == "light" and args.encode_live:
        p.error("--encode-live needs --callers aiortc (light callers send a pre-encoded loop)")
    if args.callers == "light":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(run(args))
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
