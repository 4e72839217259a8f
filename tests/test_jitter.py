"""The gateway's inbound jitter buffer against aiortc's, on the same simulated networks."""

from __future__ import annotations

import fractions

import av
import numpy as np
import numpy.typing as npt
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from gateway.audio import opus
from gateway.legs.inbound import InboundOpus
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


def browser_packets(n: int, *, fec: bool = False, freq: float = 440.0) -> list[bytes]:
    """Opus as a browser sends it: 48 kHz stereo, 20 ms; with FEC the SILK layer carries an
    LBRR copy of the previous frame (what Chrome does once told about loss)."""
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = 48000, "stereo", "s16"
    enc.bit_rate, enc.time_base = (24000 if fec else 64000), fractions.Fraction(1, 48000)
    if fec:
        enc.options = {"fec": "1", "packet_loss": "20", "application": "voip"}
    enc.open()
    packets: list[bytes] = []
    t = np.arange(960) / 48000
    for i in range(n + 10):
        mono = (6000 * np.sin(2 * np.pi * freq * (t + i * 0.02))).astype(np.int16)
        f = av.AudioFrame.from_ndarray(np.repeat(mono, 2).reshape(1, -1), format="s16",
                                       layout="stereo")
        f.sample_rate, f.pts = 48000, i * 960
        packets += [bytes(p) for p in enc.encode(f)]
    return packets[:n]


def rtp(i: int, data: bytes, *, ts: int | None = None) -> RtpPacket:
    p = RtpPacket(payload_type=111, sequence_number=(7000 + i) & 0xFFFF,
                  timestamp=ts if ts is not None else 1000 + i * 960, payload=data)
    p._data = data  # type: ignore[attr-defined]
    return p


def collect() -> tuple[list[npt.NDArray[np.int16]], InboundOpus]:
    out: list[npt.NDArray[np.int16]] = []
    return out, InboundOpus(out.append)


def dominant_hz(pcm: npt.NDArray[np.int16], rate: int = 24000) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / len(pcm))


def test_inbound_decodes_browser_opus_to_24k_mono_in_the_callback() -> None:
    out, inbound = collect()
    for i, data in enumerate(browser_packets(50)):
        assert inbound.add(rtp(i, data)) == (False, None)  # nothing left for aiortc's decoder
    pcm = np.concatenate(out)
    assert len(out) == 50 and len(pcm) == 50 * 480
    assert abs(dominant_hz(pcm[4800:]) - 440) < 5


def test_lost_packets_are_rebuilt_from_fec_or_concealed_and_time_is_kept() -> None:
    packets = browser_packets(60, fec=True)
    out, inbound = collect()
    lost = {20, 40, 41}
    for i, data in enumerate(packets):
        if i not in lost:
            inbound.add(rtp(i, data))
    pcm = np.concatenate(out)
    assert len(pcm) == 60 * 480  # every lost 20 ms filled: the model's clock does not slip
    assert inbound.buffer.stats.lost == 3
    # The single loss is rebuilt from the next packet's LBRR copy (libopus >= 1.5 can tell).
    if opus.OpusDecoder().has_fec(packets[21]) is not None:
        assert inbound.buffer.stats.recovered >= 1
    # The rebuilt/concealed stretch continues the tone instead of dropping to silence.
    gap = pcm[20 * 480:21 * 480].astype(np.float64)
    assert np.sqrt(np.mean(gap ** 2)) > 1000


def test_malformed_packets_are_concealed_not_raised() -> None:
    packets = browser_packets(10)
    out, inbound = collect()
    for i, data in enumerate(packets):
        inbound.add(rtp(i, b"\xff\xff\xff" if i == 5 else data))
    assert inbound.malformed == 1
    assert sum(len(x) for x in out) == 10 * 480


def test_discontinuous_transmission_is_filled_but_a_long_pause_is_not() -> None:
    packets = browser_packets(4)
    out, inbound = collect()
    inbound.add(rtp(0, packets[0]))
    inbound.add(rtp(1, packets[1], ts=1000 + 11 * 960))  # 200 ms not sent (DTX)
    assert sum(len(x) for x in out) == 12 * 480
    inbound.add(rtp(2, packets[2], ts=1000 + 500 * 960))  # 10 s later: a muted client
    assert sum(len(x) for x in out) == 13 * 480


def test_plain_loss_does_not_hold_the_wait_up() -> None:
    # 30 +- 20 ms of delay reorders packets two deep; 2 % loss leaves a gap every ~50
    # packets. Only late arrivals may keep the wait raised, so it comes back down.
    buf = AdaptiveJitterBuffer()
    res = simulate(buf, seconds=600, loss=0.02, jitter_ms=40)
    assert pct(res.added_ms, 99) <= 30
    assert buf.wait == buf.min_wait
