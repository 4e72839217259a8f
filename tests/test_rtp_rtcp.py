"""RTP and RTCP as bytes (gateway/legs/rtp.py, rtcp.py): golden packets written out by hand
from RFC 3550 / 4585 / 8285, cross-read with aiortc's own parser."""

from __future__ import annotations

from typing import Any, cast

import pytest
from aiortc.rtp import RtcpPacket, RtpPacket

from gateway.legs.rtcp import (
    Nack,
    Pli,
    ReceiverReport,
    ReceiverStats,
    ReportBlock,
    SenderReport,
    SenderStats,
    build_bye,
    build_rr,
    build_sdes,
    ntp_mid,
    ntp_time,
    parse_rtcp,
)
from gateway.legs.rtp import MalformedRtp, RtpWriter, is_rtcp, one_byte_extensions, parse_rtp

PLAIN = bytes.fromhex("806f1234 01020304 deadbeef aabb")
#: The same with the mid extension (id 1, "0") in the one-byte form: BEDE, 1 word, 0x10 '0'.
WITH_MID = bytes.fromhex("906f1234 01020304 deadbeef bede0001 10300000 aabb")


def test_writer_builds_the_golden_packets() -> None:
    assert RtpWriter(111, 0xDEADBEEF, seq=0x1234).build(0x01020304, b"\xaa\xbb") == PLAIN
    w = RtpWriter(111, 0xDEADBEEF, seq=0x1234, extensions=[(1, b"0")])
    assert w.build(0x01020304, b"\xaa\xbb") == WITH_MID
    assert w.seq == 0x1235


def test_sequence_numbers_and_timestamps_wrap() -> None:
    w = RtpWriter(111, 1, seq=0xFFFF)
    a = w.build(0x1_0000_0005, b"x")
    b = w.build(6, b"x")
    assert parse_rtp(a)[1:3] == (0xFFFF, 5) and parse_rtp(b)[1:3] == (0, 6)


def test_parse_reads_the_golden_packets_as_aiortc_does() -> None:
    for data in (PLAIN, WITH_MID):
        pt, seq, ts, ssrc, start, end = parse_rtp(data)
        ref = RtpPacket.parse(data)
        assert (pt, seq, ts, ssrc) == (ref.payload_type, ref.sequence_number, ref.timestamp,
                                       ref.ssrc) == (111, 0x1234, 0x01020304, 0xDEADBEEF)
        assert data[start:end] == ref.payload == b"\xaa\xbb"


def test_parse_skips_csrcs_and_padding() -> None:
    # CC = 1 (one CSRC), P set: payload "hi", then 2 padding bytes whose last says 2.
    data = bytes.fromhex("a16f0001 00000002 00000003 00000009") + b"hi" + b"\x00\x02"
    pt, seq, ts, ssrc, start, end = parse_rtp(data)
    assert (pt, seq, ts, ssrc) == (111, 1, 2, 3) and data[start:end] == b"hi"


@pytest.mark.parametrize("data", [
    b"\x80\x6f\x00",  # shorter than a header
    bytes.fromhex("406f1234 01020304 deadbeef"),  # version 1
    bytes.fromhex("906f1234 01020304 deadbeef bede00ff"),  # extension longer than the packet
    bytes.fromhex("a06f1234 01020304 deadbeef 0009"),  # padding longer than the payload
])
def test_malformed_rtp_is_refused(data: bytes) -> None:
    with pytest.raises(MalformedRtp):
        parse_rtp(data)


def test_rtcp_and_rtp_are_told_apart_on_one_port() -> None:
    assert not is_rtcp(PLAIN) and is_rtcp(build_bye(1))


def test_extension_block_limits() -> None:
    assert one_byte_extensions([(1, b"0"), (2, b"\x7f")]) == bytes.fromhex("bede0001 1030207f")
    with pytest.raises(ValueError):
        one_byte_extensions([(15, b"0")])


RR = bytes.fromhex("81c90007 00000001 00000002 10000005 00010064 00000020 12345678 00010000")
SDES = bytes.fromhex("81ca0003 00000001 01026162 00000000")
NACK = bytes.fromhex("81cd0003 00000001 00000002 00640005")
PLI = bytes.fromhex("81ce0002 00000001 00000002")
SR = bytes.fromhex("80c80006 00000007 11223344 55667788 00000960 00000003 00000102")


def test_report_builders_match_the_golden_packets() -> None:
    block = ReportBlock(2, 0x10, 5, 0x10064, 0x20, 0x12345678, 0x10000)
    assert build_rr(1, [block]) == RR
    assert build_sdes(1, "ab") == SDES
    assert build_bye(9) == bytes.fromhex("81cb0001 00000009")
    sr = SenderStats(7)
    sr.packets, sr.octets = 3, 0x102
    # NTP 0x11223344.55667788 is this Unix time.
    unix = (0x11223344 + 0x55667788 / 2**32) - 2_208_988_800
    assert abs(ntp_time(unix) - 0x1122334455667788) < 2**12  # a double's precision
    built = sr.sender_report([], unix, 0x960)
    assert built[:12] == SR[:12] and built[16:] == SR[16:]  # all but the NTP fraction
    assert cast(Any, RtcpPacket.parse(built)[0]).sender_info.packet_count == 3


def test_parse_reads_a_compound_packet() -> None:
    items = parse_rtcp(SR + RR + SDES + NACK + PLI + build_bye(1))
    assert items == [
        SenderReport(7, 0x33445566, []),
        ReceiverReport(1, [ReportBlock(2, 0x10, 5, 0x10064, 0x20, 0x12345678, 0x10000)]),
        Nack(1, 2, [100, 101, 103]),  # PID 100, BLP bits 0 and 2
        Pli(1, 2),
    ]


def test_parse_stops_at_a_truncated_or_foreign_packet() -> None:
    assert parse_rtcp(RR[:-4]) == []
    assert parse_rtcp(PLI + b"\x00\x00\x00\x00") == [Pli(1, 2)]
    negative = bytearray(RR)
    negative[13:16] = b"\xff\xff\xff"  # cumulative loss -1 (duplicates)
    assert parse_rtcp(bytes(negative))[0].blocks[0].lost == -1  # type: ignore[union-attr]


def test_receiver_stats_count_loss_across_the_wrap_and_measure_jitter() -> None:
    st = ReceiverStats(48_000)
    assert st.report_block(0.0) is None
    for seq, ts, at in [(65534, 0, 0.0), (65535, 960, 0.02), (1, 2880, 0.06), (2, 3840, 0.08)]:
        st.on_packet(5, seq, ts, at)
    assert st.highest_seq == 0x10002 and st.lost == 1 and st.jitter == 0
    block = st.report_block(1.0)
    assert block is not None and block.fraction_lost == 256 // 5 and block.lost == 1
    assert block.ssrc == 5 and block.lsr == 0 and block.dlsr == 0
    st.on_packet(5, 3, 4800, 0.11)  # 10 ms late: |D| = 480 ticks, jitter += 480/16
    assert st.jitter == 30
    st.on_sender_report(0xABCD0000, 2.0)
    block = st.report_block(2.5)
    assert block is not None and block.fraction_lost == 0  # none lost in this interval
    assert block.lsr == 0xABCD0000 and block.dlsr == 32768  # 0.5 s in 1/65536 s


def test_a_new_ssrc_restarts_the_statistics() -> None:
    st = ReceiverStats()
    st.on_packet(1, 10, 0, 0.0)
    st.on_packet(1, 20, 960, 0.02)
    assert st.lost == 9
    st.on_packet(2, 500, 0, 0.04)
    assert st.lost == 0 and st.received == 1


def test_round_trip_from_a_report_block() -> None:
    st = SenderStats(1)
    t0 = 1_700_000_000.0
    st.on_report_block(ReportBlock(1, 0, 2, 0, 30, ntp_mid(t0), 32768), t0 + 0.6)
    assert st.rtt_s is not None and abs(st.rtt_s - 0.1) < 0.001
    assert (st.remote_lost, st.remote_jitter) == (2, 30)
    st2 = SenderStats(1)
    st2.on_report_block(ReportBlock(1, 0, 0, 0, 0, 0, 0), t0)  # no SR heard yet: no RTT
    assert st2.rtt_s is None
