"""The gateway's inbound jitter buffer against aiortc's, on the same simulated networks."""

from __future__ import annotations

import av
import numpy as np
from aiortc.jitterbuffer import JitterBuffer

from gateway.audio.conceal import Concealer
from gateway.audio.opus_packets import join
from gateway.legs.jitter import AdaptiveJitterBuffer
from tests.jitter_sim import pct, simulate


def test_clean_network_adds_no_delay() -> None:
    ours = simulate(AdaptiveJitterBuffer(), seconds=30)
    theirs = simulate(JitterBuffer(capacity=16, prefetch=4), seconds=30)
    assert ours.released == ours.sent
    assert pct(ours.added_ms, 99) == 0.0
    assert pct(theirs.added_ms, 50) >= 79  # aiortc holds four frames, always


def test_loss_and_jitter_delay_is_bounded_and_does_not_grow() -> None:
    ours = simulate(AdaptiveJitterBuffer(), seconds=600, loss=0.02, jitter_ms=20)
    theirs = simulate(JitterBuffer(capacity=16, prefetch=4), seconds=600, loss=0.02,
                      jitter_ms=20)
    assert pct(ours.added_ms, 99) <= 60
    # No growth: the last minute is no worse than the first.
    first = [a for a, t in zip(ours.added_ms, ours.times, strict=True) if t < 60_000]
    last = [a for a, t in zip(ours.added_ms, ours.times, strict=True) if t > 540_000]
    assert pct(last, 50) <= pct(first, 50) + 5
    # Everything received is delivered (nothing dropped to catch up).
    assert ours.released == ours.sent - ours.lost_on_wire
    # aiortc's, for the record: stuck far behind once loss happened.
    assert pct(theirs.added_ms, 50) > 2 * max(pct(ours.added_ms, 50), 20)


def test_deep_reordering_raises_the_wait_then_relaxes() -> None:
    buf = AdaptiveJitterBuffer()
    simulate(buf, seconds=30, jitter_ms=90, seed=3)
    assert buf.stats.max_wait_seen >= 3
    simulate(buf, seconds=60, seed=4, first=1500)  # the same stream, then a clean minute
    assert buf.wait <= 2


def test_joined_packets_decode_to_all_their_audio() -> None:
    import fractions

    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = 48000, "stereo", "s16"
    enc.bit_rate, enc.time_base = 64000, fractions.Fraction(1, 48000)
    enc.open()
    packets = []
    t = np.arange(960) / 48000
    for i in range(5):
        f = av.AudioFrame.from_ndarray(
            np.repeat((5000 * np.sin(2 * np.pi * 440 * (t + i * 0.02))).astype(np.int16), 2)
            .reshape(1, -1), format="s16", layout="stereo")
        f.sample_rate, f.pts = 48000, i * 960
        packets += [bytes(p) for p in enc.encode(f)]
    joined = join(packets[1:5])
    assert joined is not None
    dec = av.CodecContext.create("libopus", "r")
    dec.sample_rate, dec.layout = 48000, "stereo"
    assert sum(fr.samples for fr in dec.decode(av.Packet(joined))) == 4 * 960
    assert join([packets[0], b"\x08" + packets[1][1:]]) is None  # different configuration


def test_concealment_fades_out_and_continues_the_waveform() -> None:
    c = Concealer(480)
    tone = (8000 * np.sin(2 * np.pi * 500 * np.arange(480) / 24000)).astype(np.int16)
    c.observe(tone)
    out = c.fill(1440).astype(np.float64)
    rms = [np.sqrt(np.mean(out[i * 480:(i + 1) * 480] ** 2)) for i in range(3)]
    assert rms[0] > rms[1] > rms[2] > 0
    assert abs(out[0] - tone[0] * 1.0) < 600  # no jump at the seam
