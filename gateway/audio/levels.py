"""Audio levels of PCM16 frames in dBFS (0 dBFS = full-scale square wave)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FLOOR_DBFS = -100.0
DIGITAL_SILENCE_DBFS = -70.0
CLIP_LEVEL = 32_700


@dataclass(frozen=True, slots=True)
class Level:
    rms_dbfs: float
    peak_dbfs: float
    clipped: int  # samples at or beyond the clip level


def _db(x: float) -> float:
    return 20 * math.log10(x / 32768.0) if x > 0 else FLOOR_DBFS


_MAX = np.maximum.reduce  # the ufunc itself: ndarray.max() adds ~1 µs of dispatch per call


def measure(samples: npt.NDArray[np.int16]) -> Level:
    if len(samples) == 0:
        return Level(FLOOR_DBFS, FLOOR_DBFS, 0)
    f = samples.astype(np.float32)
    rms = math.sqrt(float(f @ f) / len(f))
    peak = float(_MAX(np.abs(f)))  # in float32: |-32768| does not wrap
    clipped = 0
    if peak >= CLIP_LEVEL:  # counted only when the peak reaches it, which it almost never does
        clipped = int(np.count_nonzero(np.abs(f) >= CLIP_LEVEL))
    return Level(max(_db(rms), FLOOR_DBFS), max(_db(peak), FLOOR_DBFS), clipped)


def measure_bytes(pcm: bytes) -> Level:
    return measure(np.frombuffer(pcm, dtype="<i2"))
