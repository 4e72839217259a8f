"""The listen mix of one call, encoded once and forwarded to every listener (SFU style).

The session's hooks feed two small buffers (caller audio as received, agent audio as played
to the caller): a push is a bytes append, O(1) per frame. A mixer task that exists only while
the call has listeners ticks every 20 ms on its own clock, takes one frame from each buffer
(silence when a side has none), upsamples to 48 kHz, encodes each *layout* in use once with its
own libopus encoder and hands the same :class:`av.Packet` objects to every listener track of that
layout. A listener track is a queue: aiortc's sender takes the packet and only packetizes it
(``RTCRtpSender._next_encoded_frame`` -> ``OpusEncoder.pack``), so one more listener costs RTP,
SRTP and a socket write, never an encode.

Layouts: ``mono`` (caller + agent), ``stereo`` (left caller, right agent) and ``caller`` (the
caller alone: what a supervisor who has taken the call over hears, so they do not hear
themselves come back). All layouts share one packet clock (``pts`` = tick x 960 at 1/48000), so a
track can move between layouts without its RTP timestamps going backwards.

Pure asyncio + PyAV; no aiortc peer code (that is :mod:`gateway.supervise.peer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, Protocol

import av
import numpy as np
import numpy.typing as npt

from gateway.audio.formats import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES
from gateway.audio.resample import Interpolator
from gateway.call.session import SessionHooks
from gateway.legs.playout import QueuedFrame

log = logging.getLogger("gateway.supervise")

Layout = Literal["mono", "stereo", "caller"]
LAYOUTS: tuple[Layout, ...] = ("mono", "stereo", "caller")

OPUS_RATE = 48_000
OPUS_FRAME = OPUS_RATE * FRAME_MS // 1000  # 960 samples a channel
TIME_BASE = fractions.Fraction(1, OPUS_RATE)
#: Voice settings: VoIP mode; 32 kbit/s a channel is transparent for speech.
BITRATE = {"mono": 32_000, "caller": 32_000, "stereo": 64_000}
OPUS_OPTIONS = {"application": "voip", "frame_duration": "20", "compression_level": "5"}
#: After this many ticks of silence on both sides, a cached silent packet stands in for an
#: encode (the encoder's state has decayed to silence too: no click when sound resumes).
SILENT_TICKS_BEFORE_CACHE = 5

TICK_S = FRAME_MS / 1000


class PacketSink(Protocol):
    """What the hub needs of a listener's track (:class:`gateway.supervise.peer.ListenerTrack`):
    its layout, and a place to push each packet with the time it was made."""

    layout: Layout

    def push(self, packet: av.Packet[Any], t: float) -> None: ...
#: Ungated (caller) buffer: beyond this many frames the oldest are dropped.
CALLER_MAX_FRAMES = 8
#: Gated (agent) buffer: frames later than this are dropped; total cap (a WebSocket leg
#: places a whole answer ahead of real time).
AGENT_LATE_MS = 300.0
AGENT_MAX_FRAMES = 3000
#: Every this many ticks, a buffer that never ran below three frames drops the excess over
#: one frame of slack (after a burst or a stall the delay comes back down within a second
#: instead of staying for the rest of the call; the slack absorbs the usual jitter).
SHRINK_TICKS = 50

_ZERO24 = np.zeros(FRAME_SAMPLES, np.int16)
_ZERO48 = np.zeros(2 * FRAME_SAMPLES, np.int16)


class SourceBuffer:
    """One side of the mix: 20 ms PCM16 24 kHz frames waiting for the mixer's tick.

    ``gated``: a frame carries its play time (call ms) and is not taken before it (agent audio
    from a WebSocket leg arrives ahead of real time). Caller audio is taken as it comes.
    """

    def __init__(self, *, gated: bool) -> None:
        self.gated = gated
        self._frames: deque[tuple[float, float, bytes]] = deque()  # (due ms, arrival, pcm)
        self._partial = bytearray()
        self._low = 1 << 30
        self._ticks = 0
        self.dropped = 0
        self.underruns = 0
        self._playing = False

    def push(self, pcm: bytes, due_ms: float, now: float) -> None:
        if len(pcm) == FRAME_BYTES and not self._partial:
            self._frames.append((due_ms, now, pcm))
        else:  # a WebSocket client's appends come in any size
            self._partial += pcm
            while len(self._partial) >= FRAME_BYTES:
                self._frames.append((due_ms, now, bytes(self._partial[:FRAME_BYTES])))
                del self._partial[:FRAME_BYTES]
                due_ms += FRAME_MS
        cap = AGENT_MAX_FRAMES if self.gated else CALLER_MAX_FRAMES
        while len(self._frames) > cap:
            self._frames.popleft()
            self.dropped += 1

    def _due_count(self, now_ms: float) -> int:
        """Frames that may play now, counted up to a bound (O(1))."""
        if not self.gated:
            return len(self._frames)
        n = 0
        for due, _, _ in self._frames:
            if due > now_ms + FRAME_MS or n == CALLER_MAX_FRAMES:
                break
            n += 1
        return n

    def pop(self, now_ms: float) -> tuple[float, float, bytes] | None:
        """The frame to play at ``now_ms`` as (due ms, arrival, pcm), or None: silence."""
        frames = self._frames
        if self.gated:
            while frames and frames[0][0] < now_ms - AGENT_LATE_MS:
                frames.popleft()
                self.dropped += 1
        avail = self._due_count(now_ms)
        self._low = min(self._low, avail)
        self._ticks += 1
        if self._ticks >= SHRINK_TICKS:
            for _ in range(self._low - 2):  # the frame due + one of slack
                frames.popleft()
                self.dropped += 1
                avail -= 1
            self._ticks, self._low = 0, 1 << 30
        if avail == 0:
            if self._playing:  # a side that was sounding ran dry: a gap the listener hears
                self.underruns += 1
            self._playing = False
            return None
        self._playing = True
        return frames.popleft()

    def clear(self) -> None:
        self._frames.clear()
        self._partial.clear()


class OpusOut:
    """One layout's encoder and the listeners that receive its packets."""

    def __init__(self, layout: Layout) -> None:
        self.layout: Layout = layout
        self.channels = 2 if layout == "stereo" else 1
        ctx = av.CodecContext.create("libopus", "w")
        ctx.bit_rate = BITRATE[layout]
        ctx.format = "s16"
        ctx.layout = "stereo" if self.channels == 2 else "mono"
        ctx.sample_rate = OPUS_RATE
        ctx.time_base = TIME_BASE
        ctx.options = dict(OPUS_OPTIONS)
        self.ctx = ctx
        self.tracks: set[PacketSink] = set()
        self.packets = 0
        self.encoded = 0
        self.encode_s = 0.0
        self._silence: bytes | None = None
        self._quiet = 0  # silent ticks in a row

    def silent(self, pts: int) -> list[av.Packet[Any]] | None:
        """One more silent tick: the cached silent packet once this encoder has coded enough
        silence for its state to be silent too (None: encode)."""
        self._quiet += 1
        if self._quiet <= SILENT_TICKS_BEFORE_CACHE or self._silence is None:
            return None
        p = av.Packet(self._silence)
        p.pts = pts
        p.time_base = TIME_BASE
        self.packets += 1
        return [p]

    def encode(self, pcm48: npt.NDArray[np.int16], pts: int, silent: bool = False
               ) -> list[av.Packet[Any]]:
        if not silent:
            self._quiet = 0
        t0 = time.perf_counter()
        frame = av.AudioFrame(format="s16", layout="stereo" if self.channels == 2 else "mono",
                              samples=OPUS_FRAME)
        frame.planes[0].update(pcm48.tobytes())
        frame.sample_rate = OPUS_RATE
        frame.pts = pts
        frame.time_base = TIME_BASE
        packets: list[av.Packet[Any]] = list(self.ctx.encode(frame))
        for p in packets:
            # One clock for every layout: a track moved between layouts keeps its RTP time.
            p.pts = pts
            p.time_base = TIME_BASE
        if self._quiet == SILENT_TICKS_BEFORE_CACHE and len(packets) == 1:
            self._silence = bytes(packets[0])
        self.packets += len(packets)
        self.encoded += 1
        self.encode_s += time.perf_counter() - t0
        return packets


def _percentiles(values: deque[float], scale: float = 1000.0) -> dict[str, float] | None:
    if not values:
        return None
    a = np.sort(np.fromiter(values, np.float64)) * scale
    return {"p50": round(float(a[len(a) // 2]), 1),
            "p95": round(float(a[min(len(a) - 1, int(len(a) * 0.95))]), 1),
            "max": round(float(a[-1]), 1)}


class ListenHub:
    """The mixer and fan-out of one call. Idle (no hooks, no task) without listeners."""

    def __init__(self, hooks: SessionHooks, clock_ms: Callable[[], float]) -> None:
        self._hooks = hooks
        self._clock_ms = clock_ms
        self.caller = SourceBuffer(gated=False)
        self.agent = SourceBuffer(gated=True)
        self._up_caller = Interpolator(2, 16, 11_000, OPUS_RATE)
        self._up_agent = Interpolator(2, 16, 11_000, OPUS_RATE)
        self.outs: dict[Layout, OpusOut] = {}
        self._task: asyncio.Task[None] | None = None
        self._tick_index = 0
        self._silent_run = 0
        self.ticks = 0
        self.skipped_ticks = 0
        #: Seconds from a frame's arrival (caller) / play time (agent) to its packet's hand-off.
        self.caller_latency: deque[float] = deque(maxlen=500)
        self.agent_latency: deque[float] = deque(maxlen=500)

    # -- membership -----------------------------------------------------------------------

    @property
    def tracks(self) -> list[PacketSink]:
        return [t for out in self.outs.values() for t in out.tracks]

    def add(self, track: PacketSink) -> None:
        out = self.outs.get(track.layout)
        if out is None:
            out = self.outs[track.layout] = OpusOut(track.layout)
        out.tracks.add(track)
        if self._task is None:
            self._hooks.caller_audio.append(self._on_caller)
            self._hooks.agent_audio.append(self._on_agent)
            self._task = asyncio.create_task(self._run(), name="listen-mixer")

    def move(self, track: PacketSink, layout: Layout) -> None:
        if track.layout == layout:
            return
        self._detach(track)
        track.layout = layout
        self.add(track)

    def _detach(self, track: PacketSink) -> None:
        out = self.outs.get(track.layout)
        if out is not None:
            out.tracks.discard(track)
            if not out.tracks:
                del self.outs[track.layout]  # a layout nobody hears is not encoded

    async def remove(self, track: PacketSink) -> None:
        self._detach(track)
        if not self.outs:
            await self.stop()

    async def stop(self) -> None:
        """No listeners: unhook from the call and end the mixer task."""
        self.outs.clear()
        with contextlib.suppress(ValueError):
            self._hooks.caller_audio.remove(self._on_caller)
        with contextlib.suppress(ValueError):
            self._hooks.agent_audio.remove(self._on_agent)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.caller.clear()
        self.agent.clear()

    # -- hooks (on the event loop, per 20 ms frame: O(1)) ---------------------------------

    def _on_caller(self, pcm: bytes, rms_dbfs: float, offset_ms: float) -> None:
        self.caller.push(pcm, offset_ms, time.monotonic())

    def _on_agent(self, frame: QueuedFrame | None, offset_ms: float) -> None:
        # Silence played to the caller is silence here too: nothing to queue.
        if frame is not None:
            self.agent.push(frame.pcm, offset_ms, time.monotonic())

    # -- the mixer ------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        i = 0
        while True:
            due = start + i * TICK_S
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 0.2:
                # The loop stalled: re-anchor (the packet clock jumps with real time).
                skipped = int((now - due) / TICK_S)
                i += skipped
                self._tick_index += skipped
                self.skipped_ticks += skipped
            try:
                self.tick()
            except Exception:  # a bad frame must not end every listener's audio
                log.exception("listen mixer tick failed")
            i += 1

    def tick(self) -> None:
        now_ms = self._clock_ms()
        c = self.caller.pop(now_ms)
        a = self.agent.pop(now_ms)
        pts = self._tick_index * OPUS_FRAME
        self._tick_index += 1
        self.ticks += 1
        self._silent_run = self._silent_run + 1 if c is None and a is None else 0
        run = self._silent_run
        if run > 2:  # the filters' history is silent too: nothing to compute
            c48 = a48 = _ZERO48
        else:
            c48 = self._up_caller.process(np.frombuffer(c[2], "<i2") if c else _ZERO24)
            a48 = self._up_agent.process(np.frombuffer(a[2], "<i2") if a else _ZERO24)
        for out in self.outs.values():
            cached = out.silent(pts) if run else None
            if cached is not None:
                self._fan_out(out, cached)
                continue
            if out.layout == "caller":
                pcm = c48
            elif out.layout == "mono":
                mixed = c48.astype(np.int32)
                mixed += a48
                pcm = np.clip(mixed, -32768, 32767).astype(np.int16)
            else:
                pcm = np.empty(2 * OPUS_FRAME, np.int16)
                pcm[0::2] = c48
                pcm[1::2] = a48
            self._fan_out(out, out.encode(pcm, pts, silent=run > 0))
        t = time.monotonic()
        if c is not None:
            self.caller_latency.append(t - c[1])
        if a is not None:
            self.agent_latency.append(max(0.0, (self._clock_ms() - a[0]) / 1000))

    @staticmethod
    def _fan_out(out: OpusOut, packets: list[av.Packet[Any]]) -> None:
        t = time.monotonic()
        for p in packets:
            for track in out.tracks:
                track.push(p, t)

    def stats(self) -> dict[str, object]:
        return {
            "ticks": self.ticks, "skipped_ticks": self.skipped_ticks,
            "encoders": {k: {"packets": o.packets, "encoded": o.encoded,
                             "listeners": len(o.tracks),
                             "encode_us": round(o.encode_s / o.encoded * 1e6, 1)
                             if o.encoded else None}
                         for k, o in self.outs.items()},
            "caller": {"dropped": self.caller.dropped, "underruns": self.caller.underruns},
            "agent": {"dropped": self.agent.dropped},
            "added_latency_ms": {"caller": _percentiles(self.caller_latency),
                                 "agent": _percentiles(self.agent_latency)},
        }


__all__ = ["LAYOUTS", "Layout", "ListenHub", "OpusOut", "SourceBuffer", "TIME_BASE",
           "_percentiles"]
