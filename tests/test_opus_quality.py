"""The gateway's own voice encoding is cheaper than aiortc's, but never worse to listen to."""

from __future__ import annotations

import fractions
import wave
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from aiortc.codecs.opus import OpusEncoder

from gateway.config import MediaConfig
from tests.audio_quality import align, log_spectral_distance, opus_round_trip, snr_db

SPEECH = Path(__file__).parent / "fixtures" / "speech" / "lookup_phone.wav"


def speech24() -> npt.NDArray[np.int16]:
    with wave.open(str(SPEECH)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        rate = w.getframerate()
    t_dst = np.arange(int(len(x) * 24000 / rate)) / 24000
    return np.interp(t_dst, np.arange(len(x)) / rate, x).astype(np.int16)


def aiortc_round_trip(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """What aiortc would have sent for the same frames (its default encoder), decoded."""
    enc = OpusEncoder()
    dec = av.CodecContext.create("libopus", "r")
    dec.sample_rate = 48_000
    dec.layout = "stereo"
    frame = av.AudioFrame(format="s16", layout="stereo", samples=480)
    frame.sample_rate = 24_000
    frame.time_base = fractions.Fraction(1, 24_000)
    out = []
    for i in range(len(pcm) // 480):
        frame.planes[0].update(np.repeat(pcm[i * 480:(i + 1) * 480], 2).tobytes())
        frame.pts = i * 480
        payloads, _ = enc.encode(frame)
        for p in payloads:
            for f in dec.decode(av.Packet(p)):
                a = f.to_ndarray().reshape(-1)
                a = a.reshape(2, -1)[0] if f.format.is_planar else a[::2]
                if a.dtype != np.int16:
                    a = np.clip(a * 32767, -32768, 32767).astype(np.int16)
                out.append(a[::2])
    return np.concatenate(out)


def test_voice_encoder_is_at_least_as_faithful_as_aiortcs() -> None:
    src = speech24()
    media = MediaConfig()
    ours = align(src, opus_round_trip(src, bitrate=media.opus_bitrate,
                                      complexity=media.opus_complexity))
    theirs = align(src, aiortc_round_trip(src))
    lsd_ours, lsd_theirs = log_spectral_distance(*ours), log_spectral_distance(*theirs)
    snr_ours, snr_theirs = snr_db(*ours), snr_db(*theirs)
    assert lsd_ours <= lsd_theirs + 0.5, (lsd_ours, lsd_theirs)
    assert snr_ours >= snr_theirs - 1.0, (snr_ours, snr_theirs)
    assert snr_ours > 10.0


def test_cached_silence_decodes_to_silence_and_speech_resumes_cleanly() -> None:
    src = speech24()
    pad = np.zeros(24000, np.int16)
    signal = np.concatenate([src[:24000], pad, src[:24000]])
    out = opus_round_trip(signal, bitrate=96_000, complexity=5)
    # The middle second (cached silent packets) decodes to near-digital silence.
    mid = out[24000 + 4800:48000 - 2400].astype(np.float64)
    assert np.sqrt(np.mean(mid * mid)) < 10
    # And the speech after it comes back as strong as before.
    r, d = align(signal[48000:], out[48000 - 600:])
    assert snr_db(r, d) > 10.0
