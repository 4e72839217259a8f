"""What a bench caller hears of the agent's stream: one judge for both caller modes.

Every received Opus packet of a call goes through :meth:`HeardAudio.packet` (from aiortc's
receiver in ``--callers aiortc`` mode, :class:`bench.clients.PacketTap`; from the light
datapath in ``--callers light`` mode, :class:`bench.light_media.LightMedia`), so the counters
``bench.calls`` reads mean the same in both:

- ``received``: packets (20 ms frames) that arrived;
- ``loud``: of those, frames whose audio, decoded with libopus, peaks above -36 dBFS (the
  echoed tone is -20 dBFS). Every packet is decoded, in order, by one decoder per call, so the
  judgement is of the audio a real receiver would play, not of packet sizes;
- ``skipped``: frames missing by RTP timestamp although no packet was lost (the sender
  skipped them);
- ``late_max``: outbound delay drift (arrival time against RTP time, relative to the call's
  earliest frame).

Pure and synchronous: no asyncio, no aiortc.
"""

from __future__ import annotations

import math
import time

from gateway.audio.opus import OpusDecoder, OpusError

RATE = 48_000  # Opus' RTP clock
FRAME = 960  # 20 ms of it
#: A received frame counts as audio when its peak is above this (-36 dBFS); the tone is -20 dBFS.
LOUD_PEAK = 500


class HeardAudio:
    def __init__(self) -> None:
        self.received = 0
        self.loud = 0
        self.skipped = 0
        self.late_max = 0.0
        self.undecodable = 0
        self._last_ts: int | None = None
        self._best = math.inf
        self._decoder = OpusDecoder(24_000, 1)  # as the gateway's own (libopus, no resampler)

    def packet(self, timestamp: int, payload: bytes) -> None:
        """One arriving packet: its RTP timestamp and Opus payload."""
        self.received += 1
        last = self._last_ts
        if last is not None:
            gap = (timestamp - last) & 0xFFFFFFFF
            if FRAME < gap < 10 * RATE:
                self.skipped += gap // FRAME - 1
        self._last_ts = timestamp
        offset = time.monotonic() - timestamp / RATE  # the RTP origin is random: only drift
        if offset < self._best:
            self._best = offset
        elif offset - self._best > self.late_max:
            self.late_max = offset - self._best
        try:
            pcm = self._decoder.decode(payload)
        except OpusError:
            self.undecodable += 1
            return
        if len(pcm) and max(-int(pcm.min()), int(pcm.max())) > LOUD_PEAK:
            self.loud += 1

    def take_late(self) -> float:
        out, self.late_max = self.late_max, 0.0
        return out

