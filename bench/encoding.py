"""Outbound voice encoding: aiortc's default encoder vs the gateway's, per 20 ms frame.

Measures process CPU per frame on a speech fixture (and on silence), and the listening-
quality proxies of each setting (log-spectral distance and SNR of an encode/decode round
trip against the source; see tests/audio_quality.py). Interleaved repeats, medians.
Run: python -m bench.encoding
"""

from __future__ import annotations

import fractions
import json
import statistics
import time
import wave
from pathlib import Path

import av
import numpy as np
from aiortc.codecs.opus import OpusEncoder

from gateway.audio.opus import (
    APPLICATION_AUDIO,
    APPLICATION_RESTRICTED_LOWDELAY,
    APPLICATION_VOIP,
)
from gateway.legs.opus_out import VoiceOpusEncoder
from tests.audio_quality import align, log_spectral_distance, opus_round_trip, snr_db
from tests.test_opus_quality import aiortc_round_trip

SPEECH = Path(__file__).parent.parent / "tests" / "fixtures" / "speech" / "lookup_phone.wav"
OUT = Path(__file__).parent / "results" / "encoding.json"
APPS = {"lowdelay": APPLICATION_RESTRICTED_LOWDELAY, "audio": APPLICATION_AUDIO,
        "voip": APPLICATION_VOIP}
#: (application, bit rate, complexity); the first is the gateway's default.
SETTINGS = [("lowdelay", 96_000, 0), ("lowdelay", 96_000, 5), ("audio", 96_000, 0),
            ("voip", 96_000, 5), ("voip", 96_000, 0), ("lowdelay", 64_000, 0),
            ("voip", 64_000, 3), ("voip", 32_000, 5)]


def label(app: str, br: int, cl: int) -> str:
    return f"gateway {app} {br // 1000}k c{cl}"


def speech() -> np.ndarray:
    with wave.open(str(SPEECH)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        rate = w.getframerate()
    t = np.arange(int(len(x) * 24000 / rate)) / 24000
    return np.interp(t, np.arange(len(x)) / rate, x).astype(np.int16)


def cpu_ours(frames: list[bytes | None], app: str, br: int, cl: int) -> float:
    enc = VoiceOpusEncoder(bitrate=br, complexity=cl, application=APPS[app])
    t0 = time.process_time()
    for i, f in enumerate(frames * 4):
        enc.encode(f, i * 480)
    return (time.process_time() - t0) / (len(frames) * 4) * 1e6


def cpu_aiortc(frames: list[bytes | None]) -> float:
    enc = OpusEncoder()
    fr = av.AudioFrame(format="s16", layout="stereo", samples=480)
    fr.sample_rate, fr.time_base = 24000, fractions.Fraction(1, 24000)
    t0 = time.process_time()
    for i, f in enumerate(frames * 4):
        pcm = np.frombuffer(f, np.int16) if f else np.zeros(480, np.int16)
        fr.planes[0].update(np.repeat(pcm, 2).tobytes())
        fr.pts = i * 480
        enc.encode(fr)
    return (time.process_time() - t0) / (len(frames) * 4) * 1e6


def main() -> None:
    s = speech()
    frames: list[bytes | None] = [s[i * 480:(i + 1) * 480].tobytes() for i in range(len(s) // 480)]
    silence: list[bytes | None] = [None] * len(frames)
    runs: dict[str, list[float]] = {}
    for _ in range(3):
        runs.setdefault("aiortc speech", []).append(cpu_aiortc(frames))
        runs.setdefault("aiortc silence", []).append(cpu_aiortc(silence))
        for app, br, cl in SETTINGS:
            runs.setdefault(f"{label(app, br, cl)} speech", []).append(
                cpu_ours(frames, app, br, cl))
        runs.setdefault(f"{label(*SETTINGS[0])} silence", []).append(
            cpu_ours(silence, *SETTINGS[0]))
    quality = {"aiortc": align(s, aiortc_round_trip(s))}
    for app, br, cl in SETTINGS:
        quality[label(app, br, cl)] = align(s, opus_round_trip(
            s, bitrate=br, complexity=cl, application=APPS[app]))
    res = {"cpu_us_per_frame": {k: statistics.median(v) for k, v in runs.items()},
           "quality": {k: {"lsd_db": log_spectral_distance(*v), "snr_db": snr_db(*v)}
                       for k, v in quality.items()}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2))
    for k, us in res["cpu_us_per_frame"].items():
        print(f"{k:28s} {us:7.1f} us/frame")
    for k, q in res["quality"].items():
        print(f"{k:28s} LSD {q['lsd_db']:.2f} dB  SNR {q['snr_db']:.1f} dB")


if __name__ == "__main__":
    main()
