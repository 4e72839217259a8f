"""The recogniser's optional signal processing before log-mel, pure numpy: WSOLA
time-stretching (``timestretch``) and the decision-directed Wiener filter (``wiener``)."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.localrt.logmel import log_mel
from gateway.localrt.timestretch import stretch, tape
from gateway.localrt.wiener import live_noise, noise_floor, snr_db, wiener

RATE = 16_000


def _peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum) * RATE / len(x))


def _glide(seconds: float) -> np.ndarray:
    """A voiced-like tone whose pitch rises from 120 to 240 Hz, with harmonics."""
    t = np.arange(int(RATE * seconds)) / RATE
    f = 120 + 120 * t / seconds
    phase = 2 * np.pi * np.cumsum(f) / RATE
    wave = np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)
    return (wave * 6000).astype(np.int16)


@pytest.mark.parametrize("speed", [0.8, 0.85, 1.25])
def test_stretch_changes_duration_and_keeps_pitch(speed: float) -> None:
    tone = (np.sin(2 * np.pi * 173 * np.arange(2 * RATE) / RATE) * 8000).astype(np.int16)
    out = stretch(tone, speed)
    assert out.dtype == np.int16
    assert abs(len(out) - len(tone) / speed) <= 1
    mid = out[len(out) // 4:len(out) // 4 + RATE // 2]
    assert _peak_hz(mid) == pytest.approx(173, abs=3)
    # frames are aligned on the waveform: no cancellation dips inside the output
    inner = np.abs(out[1000:-1000].astype(np.float64))
    window = 400  # 25 ms, more than four periods
    peaks = np.lib.stride_tricks.sliding_window_view(inner, window).max(axis=1)
    assert peaks.min() > 0.9 * 8000


def test_stretch_follows_a_gliding_pitch_in_time() -> None:
    glide = _glide(2.0)
    out = stretch(glide, 0.8)  # 2.5 s
    # the pitch at 40 % of the output is the pitch at 40 % of the input (about 168 Hz)
    at = int(0.4 * len(out))
    assert _peak_hz(out[at - 1600:at + 1600]) == pytest.approx(
        _peak_hz(glide[int(0.4 * len(glide)) - 1280:int(0.4 * len(glide)) + 1280]), abs=8)


def test_stretch_leaves_speed_one_and_short_audio_alone() -> None:
    tone = _glide(0.5)
    assert stretch(tone, 1.0) is tone
    assert stretch(tone[:500], 0.8) is not None and len(stretch(tone[:500], 0.8)) == 500
    with pytest.raises(ValueError):
        stretch(tone, 0.1)


def _spectra(signal: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(signal, 400)[::160] * np.hanning(400)
    return (np.abs(np.fft.rfft(frames, axis=1)) ** 2).astype(np.float32)


def test_wiener_turns_noise_down_and_keeps_the_tone() -> None:
    rng = np.random.default_rng(4)
    n = RATE * 2
    t = np.arange(n) / RATE
    tone = np.sin(2 * np.pi * 1000 * t) * 3000 * ((t > 0.5) & (t < 1.5))
    noise = rng.standard_normal(n) * 300
    power = _spectra(tone + noise)
    clean = wiener(power)
    assert clean.shape == power.shape and clean.dtype == power.dtype
    tone_bin = round(1000 * 400 / RATE)
    noise_bins = np.r_[40:60, 120:180]
    speech = slice(70, 140)  # frames inside the tone
    # the tone's bin keeps (almost) all its power, the noise-only bins lose >= 10 dB
    assert clean[speech, tone_bin].mean() > 0.8 * power[speech, tone_bin].mean()
    assert clean[:, noise_bins].mean() < 0.1 * power[:, noise_bins].mean()
    assert np.all(clean <= power + 1e-6)


def test_noise_floor_is_the_quietest_frames_and_short_input_is_left_alone() -> None:
    power = np.ones((50, 201), dtype=np.float32)
    power[:10] *= 100.0  # loud frames
    assert np.allclose(noise_floor(power), 1.0)
    short = power[:5]
    assert wiener(short) is short


def _tone_in_noise(snr: float, pad: float = 0.0, seed: int = 5) -> np.ndarray:
    """2 s of white noise, a 1 kHz tone in its middle second at ``snr`` dB above it
    (power per sample), ``pad`` seconds of digital silence on both sides; float, full
    scale 1."""
    rng = np.random.default_rng(seed)
    t = np.arange(RATE * 2) / RATE
    amp = 0.1
    tone = amp * np.sin(2 * np.pi * 1000 * t) * ((t > 0.5) & (t < 1.5))
    noise = rng.standard_normal(len(t)) * np.sqrt(amp ** 2 / 2 / 10 ** (snr / 10))
    silence = np.zeros(int(RATE * pad))
    return np.concatenate((silence, tone + noise, silence))


@pytest.mark.parametrize("snr", [5.0, 10.0, 20.0])
def test_snr_estimate_reads_a_tone_in_noise(snr: float) -> None:
    power = _spectra(_tone_in_noise(snr))
    assert abs(snr_db(power) - snr) < 1.5


def test_snr_estimate_ignores_digital_silence() -> None:
    # padding (a VAD cut, a muted line) would otherwise be the "noise": near-infinite SNR
    padded = _spectra(_tone_in_noise(10.0, pad=0.6))
    assert abs(snr_db(padded) - 10.0) < 1.5
    assert noise_floor(padded).sum() < 1e-6 < live_noise(padded).sum()
    silent = np.zeros((40, 201), dtype=np.float32)
    assert snr_db(silent) == float("inf")  # nothing but digital silence
    assert snr_db(padded[:5]) == float("inf")  # too short to tell


def test_low_snr_filtering_touches_noisy_audio_only() -> None:
    def pcm(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)

    for snr, changed in ((8.0, True), (25.0, False)):
        audio = pcm(_tone_in_noise(snr, pad=0.3))
        plain = log_mel(audio, preemphasis=0.97, wiener_floor=0.5)
        adaptive = log_mel(audio, preemphasis=0.97, wiener_floor=0.5, low_snr=13.0,
                           low_floor=0.2)
        assert adaptive.shape == plain.shape
        assert (not np.array_equal(adaptive, plain)) is changed


@pytest.mark.parametrize("speed", [0.85, 0.9])
def test_tape_lowers_pitch_with_the_rate(speed: float) -> None:
    tone = (np.sin(2 * np.pi * 400 * np.arange(2 * RATE) / RATE) * 8000).astype(np.int16)
    out = tape(tone, speed)
    assert out.dtype == np.int16
    assert abs(len(out) - len(tone) / speed) <= 2
    mid = out[len(out) // 4:len(out) // 4 + RATE // 2]
    assert _peak_hz(mid) == pytest.approx(400 * speed, abs=3)
    assert np.abs(mid).max() == pytest.approx(8000, rel=0.05)
    # the same audio, the same output (no random dither: decodes must be repeatable)
    assert np.array_equal(tape(tone, speed), out)


def test_tape_leaves_speed_one_alone_and_refuses_nonsense() -> None:
    tone = _glide(0.5)
    assert tape(tone, 1.0) is tone
    with pytest.raises(ValueError):
        tape(tone, 0.1)
