"""Slowing speech down for a second decode, two ways: ``stretch`` without a pitch change
(WSOLA, waveform-similarity overlap-add) and ``tape``, as a tape played slower (pitch and
formants fall with the rate: a longer vocal tract, which the recogniser hears better on
voices unlike its training data; BENCHMARKS.md "Recogniser WER", round 6).

WSOLA:

Output frames are laid down every ``HOP`` samples under a Hann window (which sums to one at
half overlap); each is read from the input near where the stretch puts it, shifted by up to
``TOLERANCE`` samples to the place whose waveform best continues the previous frame (the
largest cross-correlation), so pitch periods line up and nothing is smeared. Slowing fast
speech (``speed`` < 1) gives Whisper more frames per phoneme. Pure numpy, no I/O.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.audio.resample import to_int16

from .audioio import ANALYSIS_RATE

#: 32 ms frames at 16 kHz (longer than two pitch periods of a low voice), half overlap.
FRAME = 512
HOP = FRAME // 2
#: How far a frame may move from its nominal place to line up (8 ms).
TOLERANCE = 128

_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME) / FRAME)).astype(np.float64)


def stretch(samples: npt.NDArray[np.int16], speed: float) -> npt.NDArray[np.int16]:
    """``samples`` played at ``speed`` times their rate (0.85: 1/0.85 as long), pitch kept.
    ``speed`` 1 or audio shorter than two frames: returned as is."""
    if speed == 1.0 or len(samples) < 2 * FRAME:
        return samples
    if not 0.25 <= speed <= 4.0:
        raise ValueError(f"speed {speed} out of range")
    x = samples.astype(np.float64)
    n_out = int(round(len(x) / speed))
    frames = max(1, (n_out - FRAME) // HOP + 1)
    # room for the search and the last frame on both sides
    pad = TOLERANCE + FRAME
    x = np.pad(x, (pad, pad))
    out = np.zeros(frames * HOP + FRAME)
    prev = pad  # input position of the previous frame
    for k in range(frames):
        nominal = pad + int(round(k * HOP * speed))
        if k == 0:
            pos = nominal
        else:
            # the previous frame's natural continuation, and the candidates around nominal
            target = x[prev + HOP:prev + HOP + FRAME] * _WINDOW
            lo = nominal - TOLERANCE
            region = x[lo:lo + FRAME + 2 * TOLERANCE]
            corr = np.correlate(region, target, mode="valid")
            pos = lo + int(np.argmax(corr))
        out[k * HOP:k * HOP + FRAME] += x[pos:pos + FRAME] * _WINDOW
        prev = pos
    return to_int16(out[:n_out])


def tape(samples: npt.NDArray[np.int16], speed: float) -> npt.NDArray[np.int16]:
    """``samples`` played at ``speed`` times their rate as a tape would be: 1/``speed`` as
    long, every frequency (pitch, formants) times ``speed``. ``speed`` 1: returned as is."""
    if speed == 1.0:
        return samples
    if not 0.25 <= speed <= 4.0:
        raise ValueError(f"speed {speed} out of range")
    import soxr

    # resampled from a rate of 1/speed times the real one; float in and out, since soxr
    # dithers integer output with a random seed and the same audio must decode the same
    slowed: npt.NDArray[np.float32] = soxr.resample(
        samples.astype(np.float32), ANALYSIS_RATE, int(round(ANALYSIS_RATE / speed)))
    return to_int16(slowed)
