"""Puts each channel's audio where it belongs on the call's timeline; interleaves the two.

Pure and synchronous (numpy only); the writer thread drives it. Positions are absolute sample
indexes from the call's start (offset 0) at 24 kHz.

Placement of a chunk reported at ``offset_ms`` (``e`` = where it should start - where the
channel's audio so far ends):

- first chunk, or ``e`` above ``GAP`` (2 frames): a real gap, filled with silence so a new
  talk spurt starts at its offset. One offset carries one delivery's jitter, so for its next
  ``SETTLE`` chunks the spurt is re-anchored on the *mean* offset of its chunks so far, by
  growing or shrinking that silence, which is kept unwritten meanwhile (``ready`` stops
  ``GAP`` before a settling spurt): a +-15 ms jitter leaves the start ~3 ms off, not 15.
- otherwise the chunk continues the stream at the cursor, whatever its offset says: a
  delivery jitter below a frame neither inserts nor drops anything. ``e`` feeds an
  exponential average (about 16 chunks) of the channel's error against the clock, which
  jitter leaves near 0 but a real drift (sender clock skew, a lost frame, a late burst)
  moves. Past ``SOFT`` the error is corrected in the next *quiet* chunk (silence inserted
  when behind, quiet samples dropped when ahead); past ``FORCE`` a lag is corrected at once.
  Speech is never dropped: a channel that got ahead with speech (a client that sent audio
  faster than real time) stays ahead until it pauses.

Memory is bounded: silence is held as a count, never as samples, and the leading channel is
never more than ``hold`` ahead of the lagging one, which is filled with silence up to there.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from ..audio.formats import FRAME_SAMPLES, SAMPLE_RATE

Samples = npt.NDArray[np.int16]

SAMPLES_PER_MS = SAMPLE_RATE / 1000
#: A gap larger than two frames is real: twice the largest jitter we absorb without acting.
GAP = 2 * FRAME_SAMPLES
#: Chunks over which a new talk spurt's start is averaged.
SETTLE = 10
#: Average error (samples) worth correcting at the next quiet chunk (8 ms).
SOFT = 8 * SAMPLES_PER_MS
#: Average lag corrected immediately, quiet or not (16 ms).
FORCE = 16 * SAMPLES_PER_MS
#: 1/16: averages ~16 chunks; with a uniform +-15 ms jitter the average's spread is ~1.6 ms.
ALPHA = 1 / 16
#: Peak under 2 % of full scale (-34 dBFS) counts as quiet: background, not speech.
QUIET_PEAK = 655


@dataclass(slots=True)
class ChannelStats:
    received_samples: int = 0
    gap_samples: int = 0
    inserted_samples: int = 0
    trimmed_samples: int = 0
    max_lead_samples: int = 0

    def as_ms(self) -> dict[str, float]:
        return {k.replace("_samples", "_ms"): round(v / SAMPLES_PER_MS, 1)
                for k, v in asdict(self).items()}


class _Silence:
    """A run of silence not yet written; ``taken`` once the writer consumed all of it."""

    __slots__ = ("n", "taken")

    def __init__(self, n: int) -> None:
        self.n = n
        self.taken = False


class Channel:
    """One channel's cursor and its not-yet-written samples (arrays, or runs of silence)."""

    def __init__(self) -> None:
        self.cursor = 0
        self.stats = ChannelStats()
        self._pending: deque[Samples | _Silence] = deque()
        self._error = 0.0
        self._started = False
        # The silence before the current spurt while it settles, and the spurt's error sum.
        self._gap: _Silence | None = None
        self._spurt_start = 0
        self._settle_sum = 0.0
        self._settle_n = 0

    def place(self, pcm: Samples, expected: int) -> None:
        if len(pcm) == 0:
            return
        e = expected - self.cursor
        if -e > self.stats.max_lead_samples:
            self.stats.max_lead_samples = -e
        if not self._started or e > GAP:
            self._started = True
            self.stats.gap_samples += max(e, 0)
            self._gap = self._silence(max(e, 0))
            self._spurt_start = self.cursor
            self._settle_sum, self._settle_n = 0.0, 1
            self._error = 0.0
        elif self._gap is not None and not self._gap.taken:
            self._settle(e)
        else:
            self._error += (e - self._error) * ALPHA
            if self._error > SOFT or self._error < -SOFT:
                pcm = self._correct(pcm)
        if len(pcm):
            self.stats.received_samples += len(pcm)
            self._pending.append(pcm)
            self.cursor += len(pcm)

    def _settle(self, e: int) -> None:
        """Move the spurt so far onto the mean offset of its chunks (see module doc)."""
        assert self._gap is not None
        self._settle_sum += e
        self._settle_n += 1
        shift = round(self._settle_sum / self._settle_n)
        shift = max(shift, -self._gap.n)
        if shift:
            self._gap.n += shift
            self.cursor += shift
            self._spurt_start += shift
            self.stats.gap_samples += shift
            self._settle_sum -= shift * self._settle_n
        if self._settle_n >= SETTLE:
            self._error = self._settle_sum / self._settle_n
            self._gap = None

    def _correct(self, pcm: Samples) -> Samples:
        quiet = int(pcm.max()) < QUIET_PEAK and int(pcm.min()) > -QUIET_PEAK
        if self._error > 0 and (quiet or self._error > FORCE):
            k = round(self._error)
            self._silence(k)
            self.stats.inserted_samples += k
            self._error -= k
        elif self._error < 0 and quiet:
            k = min(round(-self._error), len(pcm))
            self.stats.trimmed_samples += k
            self._error += k
            pcm = pcm[k:]
        return pcm

    @property
    def stable(self) -> int:
        """Where the audio can no longer move: just before a spurt that is still settling."""
        if self._gap is not None and not self._gap.taken:
            return self._spurt_start - GAP
        return self.cursor

    def fill_to(self, position: int) -> None:
        """Silence up to ``position`` (a forced fill: nothing came for this stretch)."""
        if position > self.cursor:
            self.stats.gap_samples += position - self.cursor
            self._silence(position - self.cursor)

    def _silence(self, n: int) -> _Silence:
        last = self._pending[-1] if self._pending else None
        if isinstance(last, _Silence):
            last.n += n
        else:
            last = _Silence(n)
            self._pending.append(last)
        self.cursor += n
        return last

    def take_into(self, dst: npt.NDArray[np.int16]) -> None:
        """Move the next ``len(dst)`` pending samples into ``dst`` (pre-zeroed)."""
        need, pos = len(dst), 0
        q = self._pending
        while pos < need:
            seg = q[0]
            if isinstance(seg, _Silence):
                k = min(seg.n, need - pos)
                seg.n -= k
                if seg.n == 0:
                    seg.taken = True
                    q.popleft()
            else:
                k = min(len(seg), need - pos)
                dst[pos:pos + k] = seg[:k]
                if k == len(seg):
                    q.popleft()
                else:
                    q[0] = seg[k:]
            pos += k


class StereoAligner:
    """Left = caller, right = agent; hands out interleaved blocks both channels have passed."""

    def __init__(self, *, hold_samples: int = SAMPLE_RATE) -> None:
        self.channels = (Channel(), Channel())
        self.hold = hold_samples
        self.committed = 0
        self.max_pending_samples = 0

    def place(self, channel: int, pcm: bytes, offset_ms: float) -> None:
        samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)
        ch = self.channels[channel]
        ch.place(samples, max(0, round(offset_ms * SAMPLES_PER_MS)))
        other = self.channels[1 - channel]
        if other.cursor < ch.cursor - self.hold:
            other.fill_to(ch.cursor - self.hold)
        pending = ch.cursor - self.committed
        if pending > self.max_pending_samples:
            self.max_pending_samples = pending

    def fill_to(self, position: int) -> None:
        """Silence both channels up to ``position`` (the wall clock minus a margin)."""
        for ch in self.channels:
            ch.fill_to(position)

    def ready(self, *, final: bool = False) -> int:
        """Samples both channels have passed for good (``final``: passed at all), not taken."""
        if final:
            return min(ch.cursor for ch in self.channels) - self.committed
        return max(0, min(ch.stable for ch in self.channels) - self.committed)

    def take(self, n: int) -> Samples:
        """The next ``n`` (<= ready()) stereo sample frames, interleaved, shape ``(n, 2)``."""
        out = np.zeros((n, 2), dtype=np.int16)
        for i, ch in enumerate(self.channels):
            ch.take_into(out[:, i])
        self.committed += n
        return out

    def finish(self, end: int) -> int:
        """Pad both channels to ``end`` (or to the longer one); returns the final length."""
        end = max(end, *(ch.cursor for ch in self.channels))
        self.fill_to(end)
        return end
