"""Listening-quality proxies for codec settings: round trip a signal, compare spectra."""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt

from gateway.audio.opus import APPLICATION_RESTRICTED_LOWDELAY
from gateway.legs.opus_out import VoiceOpusEncoder

RATE = 24_000


def opus_round_trip(pcm: npt.NDArray[np.int16], *, bitrate: int, complexity: int,
                    application: int = APPLICATION_RESTRICTED_LOWDELAY
                    ) -> npt.NDArray[np.int16]:
    enc = VoiceOpusEncoder(bitrate=bitrate, complexity=complexity, application=application)
    dec = av.CodecContext.create("libopus", "r")
    dec.sample_rate = 48_000
    dec.layout = "stereo"
    out: list[npt.NDArray[np.int16]] = []
    for i in range(len(pcm) // 480):
        frame = pcm[i * 480:(i + 1) * 480]
        packet = enc.encode(frame.tobytes() if np.any(frame) else None, i * 480)
        for f in dec.decode(packet):
            a = f.to_ndarray().reshape(-1)
            if f.format.is_planar:
                a = a.reshape(len(f.layout.channels), -1)[0]
            else:
                a = a[:: len(f.layout.channels)]
            if a.dtype != np.int16:
                a = np.clip(a * 32767, -32768, 32767).astype(np.int16)
            out.append(a[::2])  # 48 kHz -> 24 kHz (the content is band-limited to 12 kHz)
    return np.concatenate(out) if out else np.zeros(0, np.int16)


def align(ref: npt.NDArray[np.int16], deg: npt.NDArray[np.int16], max_lag: int = 2400
          ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    r, d = ref.astype(np.float64), deg.astype(np.float64)
    n = min(len(r), len(d)) - max_lag
    best = max(range(max_lag), key=lambda k: float(np.dot(r[:n], d[k:k + n])))
    return r[:n], d[best:best + n]


def log_spectral_distance(ref: npt.NDArray[np.float64], deg: npt.NDArray[np.float64],
                          frame: int = 480) -> float:
    """Mean log-spectral distance (dB) over frames that carry speech (above -50 dBFS)."""
    win = np.hanning(frame)
    dists = []
    for i in range(0, len(ref) - frame, frame // 2):
        a, b = ref[i:i + frame], deg[i:i + frame]
        if np.sqrt(np.mean(a * a)) < 32768 * 10 ** (-50 / 20):
            continue
        pa = np.abs(np.fft.rfft(a * win)) ** 2 + 1e-3
        pb = np.abs(np.fft.rfft(b * win)) ** 2 + 1e-3
        band = slice(3, frame // 2 * 8 // 12)  # 150 Hz .. 8 kHz: where speech lives
        dists.append(np.sqrt(np.mean((10 * np.log10(pa[band] / pb[band])) ** 2)))
    return float(np.mean(dists))


def snr_db(ref: npt.NDArray[np.float64], deg: npt.NDArray[np.float64]) -> float:
    g = float(np.dot(ref, deg) / max(np.dot(deg, deg), 1e-9))
    noise = ref - g * deg
    return float(10 * np.log10(np.dot(ref, ref) / max(np.dot(noise, noise), 1e-9)))
