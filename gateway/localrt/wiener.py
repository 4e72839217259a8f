"""Noise reduction of short-time power spectra: a Wiener gain per bin, with the a-priori SNR
estimated "decision-directed" (Ephraim and Malah: mostly last frame's cleaned power, a little
of this frame's excess over the noise), which changes slowly and so leaves far less "musical
noise" than subtracting the noise frame by frame does. The noise spectrum is the mean of the
quietest frames: the utterance the VAD hands over starts and ends with some of the caller's
background. Pure numpy, no I/O.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Power = npt.NDArray[np.float32]

#: Share of the frames (the quietest by energy) whose mean is the noise spectrum.
NOISE_FRACTION = 0.1
#: Decision-directed smoothing (0.98 in the literature).
ALPHA = 0.98
#: Gain floor (amplitude): noise is turned down at most this far (0.1: -20 dB).
GAIN_FLOOR = 0.1
#: Lower bound of the a-priori SNR.
XI_MIN = 10 ** (-25 / 10)
#: A frame whose summed power is under this is digital silence (about -78 dBFS of white
#: noise after pre-emphasis; one LSB of dither reads ~4e-5): it says nothing of the
#: background and is left out of ``live_noise`` / ``snr_db``.
SILENT_ENERGY = 1e-3


def noise_floor(power: Power, fraction: float = NOISE_FRACTION) -> npt.NDArray[np.float64]:
    """Mean power spectrum of the quietest ``fraction`` of the (frames, bins) spectra."""
    energy = power.sum(axis=1)
    quiet = np.argsort(energy)[:max(3, int(len(power) * fraction))]
    return np.asarray(power[quiet].mean(axis=0), dtype=np.float64)


def live_noise(power: Power, fraction: float = NOISE_FRACTION,
               silent: float = SILENT_ENERGY) -> npt.NDArray[np.float64]:
    """``noise_floor`` over the frames that are not digital silence (all frames when fewer
    than 10 are): the padding a VAD cut or a muted line adds is not the caller's noise."""
    live = power[power.sum(axis=1) > silent]
    return noise_floor(live if len(live) >= 10 else power, fraction)


def snr_db(power: Power, noise: npt.NDArray[np.float64] | None = None,
           silent: float = SILENT_ENERGY) -> float:
    """Estimated SNR (dB) of (frames, bins) power spectra: the mean energy of the louder half
    of the live frames (speech plus noise), less the noise estimate (``live_noise``), over
    the noise estimate. Fewer than 10 frames or no noise at all: ``inf``."""
    if len(power) < 10:
        return float("inf")
    noise = live_noise(power, silent=silent) if noise is None else noise
    floor = float(noise.sum())
    energy = power.sum(axis=1)
    energy = energy[energy > silent] if (energy > silent).sum() >= 10 else energy
    loud = float(np.sort(energy)[len(energy) // 2:].mean())
    if floor <= 0.0:
        return float("inf")
    return 10.0 * float(np.log10(max(loud - floor, 1e-12) / floor))


def wiener(power: Power, noise: npt.NDArray[np.float64] | None = None,
           alpha: float = ALPHA, gain_floor: float = GAIN_FLOOR) -> Power:
    """(frames, bins) power spectra with the noise taken out (the same shape); ``noise``
    defaults to ``noise_floor(power)``. Fewer than 10 frames: returned as is."""
    if len(power) < 10:
        return power
    noise = noise_floor(power) if noise is None else noise
    noise = np.maximum(noise, 1e-12)
    gamma = power / noise  # a-posteriori SNR
    out = np.empty_like(power)
    prev_clean = np.zeros(power.shape[1])  # last frame's |G|^2 * gamma
    for t in range(len(power)):
        xi = alpha * prev_clean + (1 - alpha) * np.maximum(gamma[t] - 1.0, 0.0)
        xi = np.maximum(xi, XI_MIN)
        gain = np.maximum(xi / (1.0 + xi), gain_floor)
        prev_clean = gain ** 2 * gamma[t]
        out[t] = gain ** 2 * power[t]
    return out
