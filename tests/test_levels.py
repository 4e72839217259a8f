"""gateway.audio.levels: RMS, peak and clipping in dBFS, against a float64 reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.audio.levels import CLIP_LEVEL, FLOOR_DBFS, Level, measure, measure_bytes


def reference(x: np.ndarray) -> tuple[float, float, int]:
    f = x.astype(np.float64)
    rms = math.sqrt(float(np.mean(f * f)))
    peak = float(np.max(np.abs(f)))

    def db(v: float) -> float:
        return max(20 * math.log10(v / 32768.0), FLOOR_DBFS) if v > 0 else FLOOR_DBFS

    return db(rms), db(peak), int(np.count_nonzero(np.abs(f) >= CLIP_LEVEL))


FRAMES = {
    "tone": (8000 * np.sin(2 * np.pi * 400 * np.arange(480) / 24000)).astype(np.int16),
    "noise": np.random.default_rng(7).integers(-32768, 32768, 480).astype(np.int16),
    "most negative": np.full(480, -32768, np.int16),
    "clipping": np.r_[np.full(10, 32767), np.full(5, -32768), np.zeros(465)].astype(np.int16),
    "silence": np.zeros(480, np.int16),
}


@pytest.mark.parametrize("name", list(FRAMES))
def test_measure_matches_a_float64_reference(name: str) -> None:
    x = FRAMES[name]
    before = x.copy()
    rms, peak, clipped = reference(x)
    got = measure(x)
    assert got.rms_dbfs == pytest.approx(rms, abs=1e-3)
    assert got.peak_dbfs == pytest.approx(peak, abs=1e-9)
    assert got.clipped == clipped
    assert np.array_equal(x, before)  # the caller's frame is not touched
    assert measure_bytes(x.tobytes()) == got


def test_empty_frame_and_level_is_immutable() -> None:
    level = measure(np.zeros(0, np.int16))
    assert level == Level(FLOOR_DBFS, FLOOR_DBFS, 0)
    with pytest.raises(AttributeError):
        level.rms_dbfs = 0.0  # type: ignore[misc]
