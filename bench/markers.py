"""Audio markers for bench.latency: 5 ms tone bursts in silence, and a streaming detector.

The caller sends silence with one burst every ``SPACING_FRAMES`` 20 ms frames (500 ms). Bursts
cycle through three frequencies (1, 2 and 3 kHz), so a detection can only be matched to a burst
of its own frequency: a marker that arrives more than one spacing late is still matched to the
right one (the three frequencies repeat every 1.5 s). The same detector runs on 24 kHz mono
appends at the upstream and on 48 kHz decoded frames at the caller: the first sample above
-30 dBFS starts a burst (the signal is otherwise digital silence, and a burst peaks at -6 dBFS),
the next 5 ms are matched against the three frequencies, and a refractory period of 250 ms
ignores the tail of the burst and a loss concealer's repeat of it.

The caller sends pre-encoded Opus (as ``bench.clients`` does, to keep the callers cheap): one
cycle of three markers is encoded once, with the encoder's state carried through a full cycle
first so that the loop joins seamlessly, and decoded once to find which packet carries each
burst's onset (Opus' look-ahead delays audio by 6.5 ms, so it is the packet whose *decoded*
audio holds the onset).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import av
import numpy as np
import numpy.typing as npt
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame

from bench.clients import pcm_frame

RATE = 48_000
FRAME = 960  # 20 ms at 48 kHz: one RTP packet
FREQS = (1000.0, 2000.0, 3000.0)
SPACING_FRAMES = 25  # a marker every 500 ms
CYCLE_FRAMES = SPACING_FRAMES * len(FREQS)
BURST_S = 0.005
RAMP_S = 0.0005
LEVEL_DBFS = -6.0
DETECT_DBFS = -30.0
THRESHOLD = int(32768 * 10 ** (DETECT_DBFS / 20))
REFRACTORY_S = 0.25

T = TypeVar("T")
Int16s = npt.NDArray[np.int16]


def burst(rate: int, freq: float) -> npt.NDArray[np.float64]:
    """A 5 ms tone at -6 dBFS with 0.5 ms raised-cosine edges (a click without splatter)."""
    n = int(rate * BURST_S)
    r = int(rate * RAMP_S)
    env = np.ones(n)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(r) / r)
    env[:r] = ramp
    env[-r:] = ramp[::-1]
    amp = 32768 * 10 ** (LEVEL_DBFS / 20)
    out: npt.NDArray[np.float64] = amp * env * np.sin(2 * np.pi * freq * np.arange(n) / rate)
    return out


def cycle_pcm() -> list[bytes]:
    """One cycle of 20 ms stereo s16 frames at 48 kHz: a burst at the start of every
    ``SPACING_FRAMES``-th frame, silence elsewhere."""
    frames: list[bytes] = []
    for i in range(CYCLE_FRAMES):
        mono = np.zeros(FRAME)
        if i % SPACING_FRAMES == 0:
            b = burst(RATE, FREQS[i // SPACING_FRAMES])
            mono[: len(b)] = b
        frames.append(np.repeat(mono.astype(np.int16), 2).tobytes())
    return frames


@dataclass(frozen=True, slots=True)
class MarkerLoop:
    """Pre-encoded Opus packets to send in a loop, and which of them carry a marker."""

    packets: list[bytes]
    markers: dict[int, int]  # packet index in the loop -> frequency index


def marker_loop() -> MarkerLoop:
    pcm = cycle_pcm()
    enc = OpusEncoder()
    packets: list[bytes] = []
    i = 0
    while len(packets) < 3 * CYCLE_FRAMES:  # the encoder may hold back its first frame
        payloads, _ = enc.encode(pcm_frame(pcm[i % CYCLE_FRAMES], i))
        packets += payloads
        i += 1
    loop = packets[CYCLE_FRAMES: 2 * CYCLE_FRAMES]
    # Where the onsets land after decoding, found with the detector the receivers use.
    dec = OpusDecoder()
    det: MarkerDetector[int] = MarkerDetector(RATE)
    markers: dict[int, int] = {}
    for n, data in enumerate(loop + loop):
        for frame in dec.decode(JitterFrame(data=data, timestamp=n * FRAME)):
            assert isinstance(frame, av.AudioFrame)
            left: Int16s = frame.to_ndarray().reshape(-1)[0::2]  # type: ignore[assignment]
            for hit in det.feed(left, n):
                if n >= CYCLE_FRAMES:
                    markers[n - CYCLE_FRAMES] = hit.freq
    if sorted(markers.values()) != list(range(len(FREQS))):
        raise RuntimeError(f"the encoded marker loop does not decode to its markers: {markers}")
    return MarkerLoop(loop, markers)


@dataclass(frozen=True, slots=True)
class Found(Generic[T]):
    tag: T  # the tag of the chunk that held the onset
    offset: int  # onset sample within that chunk
    freq: int  # index into FREQS


class MarkerDetector(Generic[T]):
    """Finds bursts in a stream of mono s16 chunks (any chunk size, any rate)."""

    def __init__(self, rate: int, refractory_s: float = REFRACTORY_S) -> None:
        self._win = int(rate * BURST_S)
        self._refractory = int(rate * refractory_s)
        n = np.arange(self._win)
        self._probes = np.exp(-2j * np.pi * np.outer(FREQS, n) / rate) * np.hanning(self._win)
        self._pos = 0  # samples fed so far
        self._quiet_until = 0
        self._pending: tuple[T, int] | None = None
        self._window: list[Int16s] = []

    def feed(self, pcm: Int16s, tag: T) -> list[Found[T]]:
        out: list[Found[T]] = []
        start = 0
        if self._pending is not None:
            start = self._collect(pcm, 0, out)
        begin = max(start, self._quiet_until - self._pos)
        if begin < len(pcm):
            loud = np.flatnonzero(np.abs(pcm[begin:].astype(np.int32)) > THRESHOLD)
            if loud.size:
                at = begin + int(loud[0])
                self._quiet_until = self._pos + at + self._refractory
                self._pending = (tag, at)
                self._window = []
                self._collect(pcm, at, out)
        self._pos += len(pcm)
        return out

    def _collect(self, pcm: Int16s, at: int, out: list[Found[T]]) -> int:
        """Add samples from ``at`` to the pending burst's window; classify it when full.
        Returns where in ``pcm`` the window ended."""
        have = sum(len(w) for w in self._window)
        take = pcm[at: at + self._win - have]
        self._window.append(take)
        if have + len(take) >= self._win and self._pending is not None:
            tag, offset = self._pending
            self._pending = None
            out.append(Found(tag, offset, self._classify(np.concatenate(self._window))))
        return at + len(take)

    def _classify(self, window: Int16s) -> int:
        mags = np.abs(self._probes @ window.astype(np.float64))
        return int(np.argmax(mags))
