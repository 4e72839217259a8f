"""The pieces of bench.latency that need no network: markers, matching, packet parsing."""

from __future__ import annotations

import struct

import av
import numpy as np
from aiortc.codecs.opus import OpusDecoder
from aiortc.jitterbuffer import JitterFrame

from bench.latency_net import parse_rtp
from bench.latency_stats import (
    Marker,
    append_lateness,
    match,
    queued_ahead,
    summary,
    tick_wait,
)
from bench.markers import FREQS, SPACING_FRAMES, MarkerDetector, burst, marker_loop
from bench.nfq_delay import NFQA_PACKET_HDR, NFQNL_MSG_PACKET, attr, message, packets_in


def test_marker_loop_carries_one_marker_per_spacing_in_frequency_order() -> None:
    loop = marker_loop()
    assert len(loop.packets) == SPACING_FRAMES * len(FREQS)
    assert sorted(loop.markers.items()) == [(i * SPACING_FRAMES, i) for i in range(len(FREQS))]
    # Markers are loud packets, silence is tiny: what the server decodes is what we think.
    assert all(len(loop.packets[i]) > 100 for i in loop.markers)
    assert sum(len(p) < 10 for p in loop.packets) > 60


def test_detector_finds_each_burst_once_at_its_onset_across_chunks() -> None:
    rate = 24_000
    signal = np.zeros(rate * 2)
    onsets = [1000, 13_000, 25_000 + 7]
    for f, at in enumerate(onsets):
        b = burst(rate, FREQS[f])
        signal[at: at + len(b)] = b
    pcm = signal.astype(np.int16)
    det: MarkerDetector[int] = MarkerDetector(rate)
    found = []
    for start in range(0, len(pcm), 960):  # 40 ms appends; the last burst spans two
        found += [(start + h.offset, h.freq) for h in det.feed(pcm[start:start + 960], start)]
    assert [f for _, f in found] == [0, 1, 2]
    for (pos, _), at in zip(found, onsets, strict=True):
        assert 0 <= pos - at <= 6  # the ramp crosses -30 dBFS within 0.25 ms


def test_markers_survive_opus_at_48k_with_their_frequency() -> None:
    loop = marker_loop()
    dec = OpusDecoder()
    det: MarkerDetector[int] = MarkerDetector(48_000)
    freqs = []
    for n, data in enumerate(loop.packets):
        for frame in dec.decode(JitterFrame(data=data, timestamp=n * 960)):
            assert isinstance(frame, av.AudioFrame)
            left = frame.to_ndarray().reshape(-1)[0::2]
            freqs += [h.freq for h in det.feed(left, n)]  # type: ignore[arg-type]
    assert freqs == [0, 1, 2]


def test_match_takes_the_latest_source_of_the_same_frequency_once() -> None:
    sources = [(0.0, 0), (0.5, 1), (1.0, 2), (1.5, 0), (2.0, 1)]
    sinks = [(0.02, 0), (0.53, 1), (0.54, 1), (1.9, 0), (2.9, 1), (9.0, 2)]
    # 0.53 and 0.54 both fit source 1: the first wins; 1.9 goes to the 1.5 s marker (freq 0);
    # 2.9 is 0.9 s after the 2.0 s marker; 9.0 is beyond the horizon of anything.
    assert match(sources, sinks) == {0: 0, 1: 1, 3: 3, 4: 4}


def test_outbound_decomposition_from_departures() -> None:
    m = Marker(k=0, freq=0, t_handed=0.0, ts=0, t_wire=0.0, t_up_sent=1.000,
               offset_ms=26.6, chunk_ms=40.0, t_gw_out=1.071)
    # Server ticks every 20 ms at phase 11 ms: 1.011, 1.031, 1.051 went out before the marker.
    departures = [0.991, 1.011, 1.031, 1.051, 1.071, 1.091]
    m.out_queued = queued_ahead(m, departures)
    assert m.out_queued == 2  # three packets in between, one of them the delta's first frame
    wait = tick_wait(m)
    assert wait is not None and abs(wait - 0.011) < 1e-9


def test_append_lateness_is_arrival_against_the_audio_clock() -> None:
    arrivals = [[10.00, 40.0], [10.04, 40.0], [10.10, 40.0], [10.12, 40.0]]
    late = append_lateness(arrivals)
    assert [round(x, 3) for _, x in late] == [0.0, 0.0, 0.02, 0.0]


def test_summary_reports_ms_with_nearest_rank() -> None:
    s = summary([i / 1000 for i in range(1, 101)] + [None])
    assert s["n"] == 100 and s["p50"] == 50 and s["p99"] == 99 and s["max"] == 100


def test_parse_rtp_keeps_rtp_and_skips_rtcp() -> None:
    def ip_udp(payload: bytes) -> bytes:
        ip = bytes([0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17]) + bytes(10)
        return ip + struct.pack("!HHHH", 1, 2, 8 + len(payload), 0) + payload

    rtp = struct.pack("!BBHII", 0x80, 111, 7, 96000, 0xABCDEF01) + b"opus"
    assert parse_rtp(ip_udp(rtp)) == (0xABCDEF01, 7, 96000, 4)
    rtcp = struct.pack("!BBHI", 0x80, 200, 6, 0xABCDEF01) + bytes(20)
    assert parse_rtp(ip_udp(rtcp)) is None
    assert parse_rtp(ip_udp(b"\x00\x01")) is None  # STUN


def test_nfqueue_packet_messages_parse_to_queue_and_id() -> None:
    hdr = attr(NFQA_PACKET_HDR, struct.pack("!IHB", 4242, 0x0800, 1) + b"\0")
    raw = message(NFQNL_MSG_PACKET, 7702, hdr) + message(NFQNL_MSG_PACKET, 7701, attr(
        NFQA_PACKET_HDR, struct.pack("!IHB", 7, 0x0800, 1) + b"\0"))
    assert packets_in(raw) == [(7702, 4242), (7701, 7)]
