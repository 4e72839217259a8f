"""Caller audio from RTP to 24 kHz PCM, on the event loop, in the packet's own callback.

aiortc hands every received RTP packet to its receiver's jitter buffer, then sends complete
frames through a queue to a decoder thread (PyAV, 48 kHz stereo), whose frames come back to
the event loop through another queue and a track. For one voice relayed to a model that is
two thread hops, three copies and a resampler per 20 ms, and under load the decoder threads
starve for the GIL behind the busy event loop (BENCHMARKS.md, "Calls", N = 20). Instead,
:class:`InboundOpus` takes the jitter buffer's place in the receiver: it reorders
(:class:`~gateway.legs.jitter.AdaptiveJitterBuffer`), decodes each released packet with
libopus straight to 24 kHz mono, conceals what was lost (in-band FEC from the next packet
when it is there, libopus' concealment otherwise, and for discontinuous transmission) and
delivers the PCM synchronously. aiortc's decoder thread is left idle.

Pure and synchronous: no asyncio here (aiortc calls :meth:`InboundOpus.add` from its own
coroutine).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from ..audio.formats import SAMPLE_RATE
from ..audio.opus import OpusDecoder, OpusError
from .jitter import AdaptiveJitterBuffer, RtpPacket

log = logging.getLogger("gateway.webrtc")

RTP_RATE = 48_000  # Opus' RTP clock, whatever the decoded rate (RFC 7587)
#: Silence or loss longer than this is a pause in the stream (a muted client), not a gap to
#: fill with concealment.
MAX_FILL_S = 1.0

PcmSink = Callable[[npt.NDArray[np.int16]], None]


class InboundOpus:
    def __init__(self, deliver: PcmSink, buffer: AdaptiveJitterBuffer | None = None) -> None:
        self.buffer = buffer or AdaptiveJitterBuffer()
        self._decoder = OpusDecoder(SAMPLE_RATE, 1)
        self._deliver = deliver
        self._ticks = RTP_RATE // SAMPLE_RATE
        self._frame = SAMPLE_RATE // 50
        self._expected_ts: int | None = None
        self.malformed = 0
        self._failed = False

    @property
    def capacity(self) -> int:  # aiortc's JitterBuffer interface
        return self.buffer.capacity

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        """aiortc's jitter-buffer interface: (PLI wanted, frame for its decoder). The frame
        is always None: the audio has been decoded and delivered here already."""
        released = self.buffer.push(packet)
        for i, p in enumerate(released):
            if p is None:
                nxt = next((q for q in released[i + 1:i + 2] if q is not None), None)
                self._conceal(self._frame, nxt)
            else:
                self._decode(p)
        return False, None

    def _decode(self, p: RtpPacket) -> None:
        data: bytes = p._data  # type: ignore[attr-defined]  # the depayloaded Opus packet
        if self._expected_ts is not None:
            gap = ((p.timestamp - self._expected_ts) & 0xFFFFFFFF) // self._ticks
            if 0 < gap <= MAX_FILL_S * SAMPLE_RATE:
                self._conceal(gap, None)  # discontinuous transmission or a skipped stretch
        try:
            pcm = self._decoder.decode(data)
        except OpusError:
            self.malformed += 1
            pcm = self._decoder.recover(None, self._frame)
        self._expected_ts = (p.timestamp + len(pcm) * self._ticks) & 0xFFFFFFFF
        self._emit(pcm)

    def _conceal(self, samples: int, fec_from: RtpPacket | None) -> None:
        data: bytes | None = fec_from._data if fec_from is not None else None  # type: ignore[attr-defined]
        while samples > 0:
            step = min(samples, self._frame)
            try:
                pcm = self._decoder.recover(data if samples == step else None, step)
            except OpusError:
                self.malformed += 1
                pcm = np.zeros(step, np.int16)
            if data is not None and samples == step and self._decoder.has_fec(data):
                self.buffer.stats.recovered += 1
            samples -= max(len(pcm), 1)
            if self._expected_ts is not None:
                self._expected_ts = (self._expected_ts + len(pcm) * self._ticks) & 0xFFFFFFFF
            self._emit(pcm)

    def _emit(self, pcm: npt.NDArray[np.int16]) -> None:
        try:
            self._deliver(pcm)
        except Exception:  # a bug downstream must not stop aiortc's receive loop
            if not self._failed:
                self._failed = True
                log.exception("caller audio handler failed")


def install_inbound(receiver: object, inbound: InboundOpus) -> None:
    """Put ``inbound`` in place of the receiver's own audio jitter buffer.

    aiortc has no public hook for this: the attribute is private (name-mangled), so this is
    the one place the gateway reaches into aiortc. It fails loudly if aiortc renames it.
    """
    attr = "_RTCRtpReceiver__jitter_buffer"
    if not hasattr(receiver, attr):
        raise RuntimeError("aiortc's RTCRtpReceiver has no jitter buffer attribute to replace")
    setattr(receiver, attr, inbound)
