"""Synthesized test signals and the measurements the recording tests make on a WAV."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.audio.formats import FRAME_SAMPLES, SAMPLE_RATE
from gateway.recording import manifest
from gateway.recording.layout import (
    AUDIO_WAV,
    METADATA,
    TRANSCRIPT,
    call_dir,
    write_json_atomic,
)
from gateway.recording.wav import header

I16 = npt.NDArray[np.int16]
F64 = npt.NDArray[np.float64]


def chirp(ms: float, f0: float, f1: float, amp: float = 0.5) -> I16:
    """A linear chirp: its autocorrelation has one sharp peak, so its position is exact."""
    n = round(ms * SAMPLE_RATE / 1000)
    t = np.arange(n) / SAMPLE_RATE
    k = (f1 - f0) / (n / SAMPLE_RATE)
    x = np.sin(2 * np.pi * (f0 * t + k * t * t / 2)) * np.hanning(n)
    return (x * amp * 32767).astype(np.int16)


def noise(n: int, amp: int, seed: int) -> I16:
    return np.random.default_rng(seed).integers(-amp, amp + 1, n).astype(np.int16)


def frames(x: I16) -> list[bytes]:
    """20 ms frames (the last one zero-padded)."""
    pad = (-len(x)) % FRAME_SAMPLES
    x = np.concatenate([x, np.zeros(pad, np.int16)])
    return [x[i:i + FRAME_SAMPLES].astype("<i2").tobytes()
            for i in range(0, len(x), FRAME_SAMPLES)]


def read_wav(path: Path) -> tuple[I16, I16]:
    """(left, right) through the stdlib reader, which also checks the header."""
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 2
        assert w.getframerate() == SAMPLE_RATE
        assert w.getsampwidth() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    return data[:, 0].copy(), data[:, 1].copy()


def ncc_peak(channel: I16, ref: I16, expected: int, search: int) -> tuple[int, float]:
    """(lag of the best normalized cross-correlation around ``expected``, its value)."""
    ref_f = ref.astype(np.float64)
    ref_n = float(np.linalg.norm(ref_f))
    best_lag, best = 0, -1.0
    lo = max(0, expected - search)
    hi = min(len(channel) - len(ref), expected + search)
    seg = channel[lo:hi + len(ref)].astype(np.float64)
    corr = np.correlate(seg, ref_f, mode="valid")
    energy = np.convolve(seg * seg, np.ones(len(ref)), mode="valid")
    norm = np.sqrt(np.maximum(energy, 1e-9)) * ref_n
    values = corr / norm
    i = int(np.argmax(values))
    best_lag, best = lo + i - expected, float(values[i])
    return best_lag, best


def fabricate(root: Path, call_id: str, *, started_at: float, caller: str | None = None,
              agent: str | None = "default", seconds: float = 0.2,
              transport: str = "webrtc") -> Path:
    """A finalized recording in the recorder's format, at any date (the recorder only
    records 'now'); for listing, retention and API tests."""
    d = call_dir(root, call_id, started_at)
    d.mkdir(parents=True)
    n = round(seconds * SAMPLE_RATE)
    stereo = np.stack([chirp(seconds * 1000, 300, 3000), noise(n, 200, 1)], axis=1)
    pcm = stereo.astype("<i2").tobytes()
    (d / AUDIO_WAV).write_bytes(header(len(pcm), sample_rate=SAMPLE_RATE, channels=2) + pcm)
    (d / TRANSCRIPT).write_text(
        '{"offset_ms": 10, "kind": "utterance", "speaker": "caller", "text": "hi"}\n')
    audio: dict[str, Any] = {"duration_s": seconds, "caller_seconds": seconds,
                             "agent_seconds": seconds}
    meta = manifest.build(
        call_id=call_id, start_meta={"transport": transport, "caller": caller, "agent": agent,
                                     "model": "gpt-realtime"},
        extra={}, started_at=started_at, duration_s=seconds, end_reason="hangup",
        audio=audio, recording={}, files=manifest.file_digests(d))
    write_json_atomic(d / METADATA, meta)
    return d
