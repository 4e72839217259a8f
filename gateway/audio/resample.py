"""Streaming FIR resamplers for the integer ratios the gateway needs (2:1 and 3:1).

Stateful: each instance carries its filter history across calls, so a stream cut into
20 ms frames comes out identical to the same stream filtered whole (no seams, no
priming gap, output length exactly input length times the ratio).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float32]


def lowpass_taps(n_taps: int, cutoff: float) -> FloatArray:
    """Windowed-sinc low-pass; ``cutoff`` as a fraction of the sample rate (0 < c < 0.5)."""
    m = np.arange(n_taps) - (n_taps - 1) / 2
    h = 2 * cutoff * np.sinc(2 * cutoff * m) * np.blackman(n_taps)
    out: FloatArray = (h / h.sum()).astype(np.float32)
    return out


def to_int16(x: npt.NDArray[np.floating[Any]]) -> Int16Array:
    """Float samples rounded and clipped to int16."""
    out: Int16Array = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    return out


class Decimator:
    """Low-pass then keep every ``factor``-th sample. Input length must be a multiple of it."""

    def __init__(self, factor: int, n_taps: int, cutoff_hz: float, in_rate: int) -> None:
        self.factor = factor
        self._taps = lowpass_taps(n_taps, cutoff_hz / in_rate)
        self._hist = np.zeros(n_taps - 1, dtype=np.float32)

    def process(self, x: Int16Array | FloatArray) -> Int16Array:
        buf = np.concatenate((self._hist, x.astype(np.float32, copy=False)))
        self._hist = buf[len(buf) - len(self._hist) :]
        y = np.convolve(buf, self._taps, mode="valid")
        return to_int16(y[:: self.factor])


class Interpolator:
    """Insert ``factor - 1`` zeros between samples, then low-pass with gain ``factor``."""

    def __init__(self, factor: int, n_taps: int, cutoff_hz: float, out_rate: int) -> None:
        self.factor = factor
        # Polyphase: split the filter so no zeros are ever multiplied.
        taps = lowpass_taps(n_taps * factor, cutoff_hz / out_rate) * factor
        self._phases = [taps[p::factor] for p in range(factor)]
        self._hist = np.zeros(n_taps - 1, dtype=np.float32)

    def process(self, x: Int16Array) -> Int16Array:
        buf = np.concatenate((self._hist, x.astype(np.float32)))
        self._hist = buf[len(buf) - len(self._hist) :]
        out = np.empty(len(x) * self.factor, dtype=np.float32)
        for p, h in enumerate(self._phases):
            out[p :: self.factor] = np.convolve(buf, h, mode="valid")
        return to_int16(out)


def up_8k_to_24k() -> Interpolator:
    return Interpolator(3, 16, 3_700, 24_000)


def down_24k_to_8k() -> Decimator:
    # Low-pass below 4 kHz first: plain decimation would alias the model's 4-12 kHz into the band.
    return Decimator(3, 48, 3_600, 24_000)
