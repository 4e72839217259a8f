"""Concealing lost caller audio: repeat the last good audio, fading out (pure numpy).

The upstream model hears a short, decaying continuation instead of a hard cut to silence,
which neither sounds like the end of an utterance to its VAD nor clicks.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FADE_PER_FRAME = 0.5  # each concealed 20 ms is half as loud as the previous


class Concealer:
    def __init__(self, frame_samples: int) -> None:
        self.frame_samples = frame_samples
        self._last: npt.NDArray[np.float32] = np.zeros(frame_samples, np.float32)

    def observe(self, good: npt.NDArray[np.int16]) -> None:
        if len(good) >= self.frame_samples:
            self._last = good[-self.frame_samples:].astype(np.float32)

    def fill(self, missing: int) -> npt.NDArray[np.int16]:
        """``missing`` samples of concealment following the last good audio."""
        n_frames = -(-missing // self.frame_samples)
        gains = FADE_PER_FRAME ** np.arange(1, n_frames + 1, dtype=np.float32)
        ramp = np.repeat(gains, self.frame_samples)[:missing]
        # Within each frame interpolate linearly so the fade has no steps.
        prev = np.concatenate([[1.0], gains[:-1]]).astype(np.float32)
        t = (np.arange(missing) % self.frame_samples) / self.frame_samples
        ramp = np.repeat(prev, self.frame_samples)[:missing] * (1 - t) + ramp * t
        body = np.tile(self._last, n_frames)[:missing]
        out: npt.NDArray[np.int16] = np.clip(body * ramp, -32768, 32767).astype(np.int16)
        self._last = out[-self.frame_samples:].astype(np.float32) if missing >= \
            self.frame_samples else self._last
        return out
