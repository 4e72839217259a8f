"""Callers for bench.latency: one probe call that measures, or many light calls that load.

Both are aiortc peers that call like a browser following OpenAI's WebRTC guide (token from
``POST /v1/realtime/client_secrets``, SDP offer to ``POST /v1/realtime/calls``, an
``oai-events`` data channel; with ``--api live`` GPT-Live's: a Live client secret, the offer in
``POST /v1/live/sessions``' JSON body) and send pre-encoded Opus paced to the wall clock.

``probe`` (run inside the caller's network namespace by bench.latency): sends
:func:`bench.markers.marker_loop` (silence, a 5 ms burst every 500 ms) and taps its own
interface (:class:`bench.latency_net.WireTap`), so every time it reports is a wire time with
the kernel's time stamp: when each marker's RTP packet left, and when each echoed marker's
packet arrived. aiortc's own receive jitter buffer (80 ms at least, 280 ms after a loss) and
decoder thread are bypassed: :class:`ReorderingDecoder` takes the buffer's place, puts packets
back in order (waiting for at most 3 newer packets on a gap) and decodes each one at once; the
decoded audio is scanned for markers, and the packet whose decoded audio holds an onset is
looked up on the tap. The time the packet was decoded is reported too, separately (the
caller's own reordering wait + decode). Protocol on stdout, one JSON object a line: ``ready``
when the data channel is open, ``result`` after ``--seconds``; with ``--calls``, that many
calls one after the other.

``load``: ``--calls`` calls sending a 400 Hz tone (``bench.clients``' pre-encoded loop). They
decode nothing (a jitter buffer that only counts packets is installed in each receiver), so a
call costs the shared machine little more than SRTP and ICE. ``ready`` once set up, then a
``mark`` line per ``mark`` on stdin, ``stop`` (or end of input) ends every call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.opus import OpusDecoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

from bench.clients import ToneTrack, opus_loop, tone_frame
from bench.latency_net import WireTap
from bench.markers import FRAME, MarkerDetector, MarkerLoop, marker_loop

RATE = 48_000
TIME_BASE = fractions.Fraction(1, RATE)
MAX_RECORDS = 100_000
LIVE_MODEL = "gpt-live-1"  # bench/live_profile.toml's public model


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class MarkerMic(MediaStreamTrack):
    """Pre-encoded marker loop, paced to the wall clock like a capture device; remembers when
    each marker packet was handed to aiortc's sender (frame index, frequency, time).

    ``phase_s`` delays the first frame: aiortc starts the sender (and so this clock) when DTLS
    connects, at the same moment as the server's outbound track, so without it the echo
    always lands just after one of the server's 20 ms ticks (the worst case). A browser's
    capture clock runs from getUserMedia, unrelated to the server's."""

    kind = "audio"

    def __init__(self, loop: MarkerLoop, phase_s: float = 0.0) -> None:
        super().__init__()
        self._marker_loop = loop
        self._phase = phase_s
        self._start: float | None = None
        self.sent = 0
        self.handed: deque[tuple[int, int, float]] = deque(maxlen=MAX_RECORDS)

    async def recv(self) -> av.Packet:  # type: ignore[type-arg]
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now + self._phase
        due = self._start + self.sent * 0.02
        if due > now:
            await asyncio.sleep(due - now)
        i = self.sent
        self.sent += 1
        n = i % len(self._marker_loop.packets)
        packet = av.Packet(self._marker_loop.packets[n])
        packet.pts = i * FRAME
        packet.time_base = TIME_BASE
        freq = self._marker_loop.markers.get(n)
        if freq is not None:
            self.handed.append((i, freq, time.monotonic()))
        return packet


class ReorderingDecoder:
    """Takes the place of aiortc's receive jitter buffer (same ``add`` interface) and decodes
    here, at once, instead of in aiortc's decoder thread: in-order packets are decoded the
    moment they arrive; on a gap it waits for at most ``wait`` newer packets, then gives the
    missing one up (so a packet reordered by the network is decoded in order, and Opus' state
    stays right). Decoded audio is scanned for markers; each one is reported with the RTP
    timestamp of the packet that carried its onset. Returns no frame to aiortc: its decoder
    thread and remote track stay idle."""

    def __init__(self, wait: int = 3) -> None:
        self.wait = wait
        self.received = 0
        self.lost = 0
        self.late = 0
        self.decoded = 0
        self.found: deque[tuple[int, int, float]] = deque(maxlen=MAX_RECORDS)
        self._next: int | None = None
        self._held: dict[int, RtpPacket] = {}
        self._decoder = OpusDecoder()
        self._detector: MarkerDetector[tuple[int, float]] = MarkerDetector(RATE)

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        self.received += 1
        seq = packet.sequence_number
        if self._next is None:
            self._next = seq
        if seq_diff(seq, self._next) < 0:
            self.late += 1  # given up on already
            return False, None
        self._held[seq] = packet
        while self._held:
            p = self._held.pop(self._next, None)
            if p is None and len(self._held) <= self.wait:
                break
            if p is None:
                self.lost += 1
            else:
                self._decode(p)
            self._next = (self._next + 1) & 0xFFFF
        return False, None

    def _decode(self, p: RtpPacket) -> None:
        t = time.monotonic()
        for f in self._decoder.decode(JitterFrame(data=p.payload, timestamp=p.timestamp)):
            assert isinstance(f, av.AudioFrame)
            self.decoded += 1
            data: npt.NDArray[np.int16] = f.to_ndarray().reshape(-1)  # type: ignore[assignment]
            for hit in self._detector.feed(data[0::len(f.layout.channels)], (p.timestamp, t)):
                self.found.append((hit.tag[0], hit.freq, hit.tag[1]))


def seq_diff(a: int, b: int) -> int:
    """a - b in 16-bit sequence space."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


class CountingSink:
    """Counts packets, emits none: nothing is decoded."""

    def __init__(self) -> None:
        self.received = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        self.received += 1
        return False, None


Buffer = ReorderingDecoder | CountingSink


def install_buffer(receiver: object, buffer: Buffer) -> None:
    """Replace aiortc's receive jitter buffer (a private, name-mangled attribute: there is no
    public hook); fails loudly if aiortc renames it."""
    attr = "_RTCRtpReceiver__jitter_buffer"
    if not hasattr(receiver, attr):
        raise RuntimeError("aiortc's RTCRtpReceiver has no jitter buffer attribute to replace")
    setattr(receiver, attr, buffer)


@dataclass
class Peer:
    pc: RTCPeerConnection
    mic: MediaStreamTrack
    buffer: Buffer
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    events: int = 0

    async def close(self) -> None:
        self.mic.stop()
        await self.pc.close()


async def mint(http: aiohttp.ClientSession, base: str, api_key: str, api: str = "realtime"
               ) -> str:
    """A client secret from the app's backend: Realtime's, or one bound to a Live session."""
    path, body = (("/v1/live/client_secrets", {"session": {"model": LIVE_MODEL}})
                  if api == "live" else ("/v1/realtime/client_secrets", {}))
    async with http.post(base + path, json=body,
                         headers={"Authorization": f"Bearer {api_key}"}) as r:
        got = await r.json()
        if r.status != 200:
            raise RuntimeError(f"client_secrets: {r.status} {got}")
        return str(got["value"])


async def answer_for(http: aiohttp.ClientSession, base: str, token: str, sdp: str,
                     api: str) -> str:
    """The SDP answer: Realtime's ``POST /v1/realtime/calls`` (SDP in, SDP out), or GPT-Live's
    ``POST /v1/live/sessions`` (``{session, transport: {type: "webrtc", sdp}}`` in JSON)."""
    if api == "live":
        async with http.post(f"{base}/v1/live/sessions", json={
                "session": {"model": LIVE_MODEL}, "transport": {"type": "webrtc", "sdp": sdp}},
                headers={"Authorization": f"Bearer {token}"}) as r:
            body = await r.json()
            if r.status != 200:
                raise RuntimeError(f"live sessions: {r.status} {body}")
            return str(body["transport"]["sdp"])
    async with http.post(f"{base}/v1/realtime/calls", data=sdp,
                         headers={"Authorization": f"Bearer {token}",
                                  "Content-Type": "application/sdp"}) as r:
        answer = await r.text()
        if r.status != 201:
            raise RuntimeError(f"calls: {r.status} {answer[:300]}")
        return answer


async def open_peer(http: aiohttp.ClientSession, base: str, api_key: str,
                    mic: MediaStreamTrack, buffer: Buffer, timeout_s: float,
                    api: str = "realtime") -> Peer:
    token = await mint(http, base, api_key, api)
    peer = Peer(RTCPeerConnection(RTCConfiguration(iceServers=[])), mic, buffer)
    channel = peer.pc.createDataChannel("oai-events")
    channel.on("open", peer.opened.set)

    def on_message(_: object) -> None:
        peer.events += 1

    channel.on("message", on_message)
    peer.pc.addTrack(mic)
    for t in peer.pc.getTransceivers():
        if t.kind == "audio":
            install_buffer(t.receiver, buffer)
    try:
        await peer.pc.setLocalDescription(await peer.pc.createOffer())
        answer = await answer_for(http, base, token, peer.pc.localDescription.sdp, api)
        await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        async with asyncio.timeout(timeout_s):
            await peer.opened.wait()
    except BaseException:
        await peer.close()
        raise
    return peer


# -- probe ------------------------------------------------------------------------------


def first_outgoing_ts(tap: WireTap, ssrc: int) -> int | None:
    """RTP timestamp of the first packet our sender put on the wire: frame 0's (aiortc adds a
    random origin to the pts of pre-encoded packets)."""
    for p in list(tap.seen):
        if p.outgoing and p.ssrc == ssrc:
            return p.ts
    return None


def busiest_ssrc(tap: WireTap, since: float) -> int | None:
    counts: dict[int, int] = {}
    for p in list(tap.seen):
        if not p.outgoing and p.t >= since:
            counts[p.ssrc] = counts.get(p.ssrc, 0) + 1
    return max(counts, key=lambda s: counts[s]) if counts else None


async def rtp_stats(pc: RTCPeerConnection) -> dict[str, int]:
    out = {"rtp_received": 0, "rtp_lost": 0, "remote_lost": 0, "ssrc": 0}
    with contextlib.suppress(Exception):
        for s in (await pc.getStats()).values():
            if s.type == "inbound-rtp":
                out["rtp_received"] += int(s.packetsReceived)
                out["rtp_lost"] += int(s.packetsLost)
                out["ssrc"] = int(s.ssrc)
            elif s.type == "remote-inbound-rtp":
                out["remote_lost"] += int(s.packetsLost)
    return out


def probe_result(mic: MarkerMic, heard: ReorderingDecoder, tap: WireTap, local_ssrc: int,
                 remote_ssrc: int | None) -> dict[str, Any]:
    origin = first_outgoing_ts(tap, local_ssrc)
    out_wire = tap.index(True, local_ssrc)
    in_wire = tap.index(False, remote_ssrc) if remote_ssrc is not None else {}
    sent = []
    for i, freq, t in mic.handed:
        ts = None if origin is None else (origin + i * FRAME) & 0xFFFFFFFF
        sent.append([i, freq, t, ts, out_wire.get(ts) if ts is not None else None])
    found = [[ts, freq, t_dec, in_wire.get(ts) if ts is not None else None]
             for ts, freq, t_dec in heard.found]
    return {"local_ssrc": local_ssrc, "remote_ssrc": remote_ssrc, "frames_sent": mic.sent,
            "frames_decoded": heard.decoded, "sent": sent, "found": found,
            "tap": {"packets": len(tap.seen), "overflow": tap.overflow},
            "buffer": {"received": heard.received, "lost": heard.lost, "late": heard.late}}


async def probe_call(http: aiohttp.ClientSession, args: argparse.Namespace, index: int,
                     loop: MarkerLoop, tap: WireTap) -> dict[str, Any]:
    """One call: ``ready`` once it is up, then ``--seconds`` of markers; returns its result.
    Calls spread their capture phase evenly over a 20 ms frame (see :class:`MarkerMic`)."""
    phase = 0.0 if args.no_phase_spread else 0.02 * (index + 0.5) / args.calls
    mic = MarkerMic(loop, phase)
    heard = ReorderingDecoder()
    t0 = time.monotonic()
    peer = await open_peer(http, args.base, args.api_key, mic, heard, args.setup_timeout,
                           args.api)
    try:
        emit({"event": "ready", "call": index, "setup_s": time.monotonic() - t0,
              "t": time.monotonic(), "phase_ms": 1000 * phase})
        await asyncio.sleep(args.seconds)
        stats = await rtp_stats(peer.pc)
        remote = stats.pop("ssrc") or busiest_ssrc(tap, t0)
        local = int(peer.pc.getSenders()[0]._ssrc)
        return {"call": index, **probe_result(mic, heard, tap, local, remote), "rtp": stats,
                "events": peer.events}
    finally:
        await peer.close()


async def probe(args: argparse.Namespace) -> int:
    """``--calls`` calls one after the other (the echo's phase against the server's 20 ms
    clock is fixed per call, so several calls sample it)."""
    loop = marker_loop()
    tap = WireTap(args.iface)
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(args.calls):
                emit({"event": "result", **(await probe_call(http, args, i, loop, tap))})
                await asyncio.sleep(0.5)  # let the server see the hang-up
    finally:
        tap.close()
    return 0


# -- load -------------------------------------------------------------------------------


async def load(args: argparse.Namespace) -> int:
    packets = opus_loop(tone_frame(400.0, -20.0))
    pcm = tone_frame(400.0, -20.0)
    gate = asyncio.Semaphore(args.setup_concurrency)
    t0 = time.monotonic()

    async def one(http: aiohttp.ClientSession) -> Peer:
        async with gate:
            return await open_peer(http, args.base, args.api_key, ToneTrack(pcm, packets),
                                   CountingSink(), args.setup_timeout)

    async with aiohttp.ClientSession() as http:
        results = await asyncio.gather(*(one(http) for _ in range(args.calls)),
                                       return_exceptions=True)
        peers = [r for r in results if isinstance(r, Peer)]
        errors = [repr(r) for r in results if not isinstance(r, Peer)]
        emit({"event": "ready", "calls": len(peers), "failed": len(errors),
              "errors": errors[:3], "setup_s": time.monotonic() - t0})
        loop = asyncio.get_running_loop()
        while True:
            cmd = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if cmd != "mark":
                break
            emit({"event": "mark", "t": time.monotonic(), "calls": len(peers),
                  "sent": sum(getattr(p.mic, "sent", 0) for p in peers),
                  "received": sum(p.buffer.received for p in peers),
                  "not_connected": sum(p.pc.connectionState != "connected" for p in peers)})
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
    emit({"event": "done"})
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.latency_caller")
    sub = p.add_subparsers(dest="mode", required=True)
    for name in ("probe", "load"):
        s = sub.add_parser(name)
        s.add_argument("--base", required=True, help="http://host:port of the server")
        s.add_argument("--api-key", default="bench-key")
        s.add_argument("--setup-timeout", type=float, default=30.0)
        s.add_argument("--api", choices=("realtime", "live"), default="realtime",
                       help="call over the Realtime API or GPT-Live (POST /v1/live/sessions)")
    pr = sub.choices["probe"]
    pr.add_argument("--seconds", type=float, required=True, help="per call")
    pr.add_argument("--calls", type=int, default=1, help="calls, one after the other")
    pr.add_argument("--no-phase-spread", action="store_true",
                    help="start each call's capture clock when DTLS connects (no offset)")
    pr.add_argument("--iface", default="eth0", help="the interface to tap (this namespace's)")
    ld = sub.choices["load"]
    ld.add_argument("--calls", type=int, required=True)
    ld.add_argument("--setup-concurrency", type=int, default=4)
    args = p.parse_args(argv)
    return asyncio.run(probe(args) if args.mode == "probe" else load(args))


if __name__ == "__main__":
    raise SystemExit(main())
