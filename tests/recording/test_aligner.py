"""The aligner alone: gaps, jitter, skew, late bursts, bounded hold (no threads, no files)."""

from __future__ import annotations

import numpy as np

from gateway.audio.formats import FRAME_SAMPLES
from gateway.recording.aligner import StereoAligner

from .signals import chirp, frames, noise


def _drain(a: StereoAligner, final: bool = True) -> np.ndarray:
    return a.take(a.ready(final=final))


def test_gap_is_silence_and_audio_lands_at_its_offset() -> None:
    a = StereoAligner()
    burst = frames(chirp(100, 300, 3000))
    for i, f in enumerate(burst):
        a.place(0, f, 500 + i * 20)
        a.place(1, f, 1500 + i * 20)
    end = a.finish(48_000)
    out = _drain(a)
    assert end == len(out) == 48_000
    left, right = out[:, 0], out[:, 1]
    assert not left[:12_000].any() and not left[14_400:].any()
    assert not right[:36_000].any() and not right[38_400:].any()
    want = np.frombuffer(b"".join(burst), "<i2")
    assert np.array_equal(left[12_000:14_400], want)
    assert np.array_equal(right[36_000:38_400], want)


def test_jitter_below_a_frame_neither_inserts_nor_drops() -> None:
    a = StereoAligner()
    rng = np.random.default_rng(7)
    src = noise(FRAME_SAMPLES * 3000, 8000, 3)  # loud: never "quiet", so never trimmed
    for i, f in enumerate(frames(src)):
        a.place(0, f, i * 20 + 100 + rng.uniform(-15, 15))
        a.place(1, f, i * 20 + 100)
    a.finish(0)
    out = _drain(a)
    st = a.channels[0].stats
    assert st.inserted_samples == 0 and st.trimmed_samples == 0
    start = st.gap_samples  # settled on the mean of the first frames' offsets
    assert abs(start - 2400) < 8 * 24
    assert np.array_equal(out[start:start + len(src), 0], src)


def test_slow_sender_clock_is_corrected_in_quiet_frames() -> None:
    """300 ppm skew would put the audio 180 ms late after 10 minutes; corrected, it stays
    within the soft threshold plus jitter."""
    a = StereoAligner()
    rng = np.random.default_rng(1)
    quiet = frames(noise(FRAME_SAMPLES, 40, 2))[0]
    worst = 0.0
    for i in range(30_000):
        true_ms = i * 20 * (1 + 300e-6)
        a.place(0, quiet, true_ms + rng.uniform(-10, 10))
        a.place(1, quiet, true_ms)
        worst = max(worst, abs(true_ms * 24 + FRAME_SAMPLES - a.channels[0].cursor))
        if i % 500 == 0:
            _drain(a, final=False)
    assert worst < 20 * 24
    assert a.channels[0].stats.inserted_samples > 150 * 24


def test_fast_sender_is_trimmed_only_in_quiet_frames() -> None:
    a = StereoAligner()
    speech = frames(noise(FRAME_SAMPLES, 9000, 5))[0]
    quiet = frames(noise(FRAME_SAMPLES, 40, 6))[0]
    # a client pushes 2 s of speech at once, then streams quiet in real time
    for _ in range(100):
        a.place(0, speech, 1000)
    lead = a.channels[0].cursor - 1000 * 24
    assert lead > 1.9 * 24_000
    for i in range(1, 400):
        a.place(0, quiet, 1000 + i * 20)
    st = a.channels[0].stats
    assert st.trimmed_samples > 1.8 * 24_000
    assert st.received_samples >= 100 * FRAME_SAMPLES  # all speech kept
    assert abs(a.channels[0].cursor - (1000 + 400 * 20) * 24) < 20 * 24


def test_lagging_channel_is_filled_so_memory_stays_bounded() -> None:
    a = StereoAligner(hold_samples=24_000)
    f = frames(noise(FRAME_SAMPLES, 8000, 9))[0]
    for i in range(60 * 50):  # one minute of caller, the agent silent throughout
        a.place(0, f, i * 20)
        if a.ready() >= 24_000:
            _drain(a, final=False)
        assert a.channels[0].cursor - a.committed <= 2 * 24_000 + FRAME_SAMPLES
    assert a.max_pending_samples <= 2 * 24_000 + FRAME_SAMPLES
