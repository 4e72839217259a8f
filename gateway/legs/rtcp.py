"""RTCP for the owned datapath: what a browser needs to hear and what it tells us (RFC 3550,
RFC 4585).

- :class:`ReceiverStats`: the caller's stream as received (RFC 3550 A.1, A.3, A.8):
  extended highest sequence number, cumulative and fractional loss, interarrival jitter, and
  the LSR/DLSR echo of its last sender report, as one report block.
- :class:`SenderStats`: our stream as sent: the sender report's counters, and the round-trip
  time from a report block about it.
- builders for SR, RR, SDES (CNAME) and BYE, and :func:`parse_rtcp` for a compound packet
  (SR, RR, generic NACK, PLI; the rest is skipped by its length).

RTCP is about one packet a second per call each way, so clarity wins over speed here; the
per-RTP-packet part is :meth:`ReceiverStats.on_packet` (a few integer operations).

Pure and synchronous: no asyncio, no aiortc.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

SR, RR, SDES, BYE, RTPFB, PSFB = 200, 201, 202, 203, 205, 206
NACK_FMT, PLI_FMT = 1, 1  # generic NACK (RTPFB), picture loss (PSFB)
NTP_EPOCH_OFFSET = 2_208_988_800  # 1900 -> 1970

_HDR = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IIIIII")
_SENDER_INFO = struct.Struct("!IIIII")


class ReportBlock(NamedTuple):
    ssrc: int
    fraction_lost: int  # of 256
    lost: int  # cumulative, signed (duplicates can make it negative)
    highest_seq: int  # extended
    jitter: int  # RTP clock units
    lsr: int
    dlsr: int  # 1/65536 s


class SenderReport(NamedTuple):
    ssrc: int
    ntp_mid: int  # the middle 32 bits of its NTP time: the LSR a receiver echoes
    blocks: list[ReportBlock]


class ReceiverReport(NamedTuple):
    ssrc: int
    blocks: list[ReportBlock]


class Nack(NamedTuple):
    sender_ssrc: int
    media_ssrc: int
    lost: list[int]


class Pli(NamedTuple):
    sender_ssrc: int
    media_ssrc: int


RtcpItem = SenderReport | ReceiverReport | Nack | Pli


def ntp_time(unix_s: float) -> int:
    """64-bit NTP time (32.32 fixed point since 1900)."""
    return int((unix_s + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def ntp_mid(unix_s: float) -> int:
    return (ntp_time(unix_s) >> 16) & 0xFFFFFFFF


# -- parsing ------------------------------------------------------------------------------


def _blocks(data: bytes, at: int, count: int, end: int) -> list[ReportBlock]:
    out = []
    for i in range(count):
        o = at + i * 24
        if o + 24 > end:
            break
        ssrc, fl, high, jitter, lsr, dlsr = _BLOCK.unpack_from(data, o)
        lost = fl & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        out.append(ReportBlock(ssrc, fl >> 24, lost, high, jitter, lsr, dlsr))
    return out


def _sr(data: bytes, at: int, count: int, end: int) -> RtcpItem | None:
    if end - at < 24:
        return None
    ssrc, msw, lsw, _rtp, _pc = _SENDER_INFO.unpack_from(data, at)
    return SenderReport(ssrc, ((msw & 0xFFFF) << 16) | (lsw >> 16),
                        _blocks(data, at + 24, count, end))


def _rr(data: bytes, at: int, count: int, end: int) -> RtcpItem | None:
    if end - at < 4:
        return None
    return ReceiverReport(struct.unpack_from("!I", data, at)[0],
                          _blocks(data, at + 4, count, end))


def _rtpfb(data: bytes, at: int, fmt: int, end: int) -> RtcpItem | None:
    if fmt != NACK_FMT or end - at < 8:
        return None
    sender, media = struct.unpack_from("!II", data, at)
    lost = []
    for o in range(at + 8, end - 3, 4):
        pid, blp = struct.unpack_from("!HH", data, o)
        lost.append(pid)
        lost.extend((pid + bit + 1) & 0xFFFF for bit in range(16) if blp >> bit & 1)
    return Nack(sender, media, lost)


def _psfb(data: bytes, at: int, fmt: int, end: int) -> RtcpItem | None:
    if fmt != PLI_FMT or end - at < 8:
        return None
    return Pli(*struct.unpack_from("!II", data, at))


_PARSERS: dict[int, Callable[[bytes, int, int, int], RtcpItem | None]] = {
    SR: _sr, RR: _rr, RTPFB: _rtpfb, PSFB: _psfb,
}


def parse_rtcp(data: bytes) -> list[RtcpItem]:
    """The items of a compound RTCP packet that the gateway acts on; packet types it does
    not (SDES, BYE, REMB, XR, ...) are skipped. Parsing stops at a header that is not
    version 2 or whose length runs past the data."""
    items: list[RtcpItem] = []
    at = 0
    while at + 4 <= len(data):
        b0, pt, words = _HDR.unpack_from(data, at)
        end = at + 4 + words * 4
        if b0 >> 6 != 2 or end > len(data):
            break
        parser = _PARSERS.get(pt)
        if parser is not None:
            item = parser(data, at + 4, b0 & 0x1F, end)
            if item is not None:
                items.append(item)
        at = end
    return items


# -- building -----------------------------------------------------------------------------


def _packet(pt: int, count: int, body: bytes) -> bytes:
    return _HDR.pack(0x80 | count, pt, len(body) // 4) + body


def _block_bytes(b: ReportBlock) -> bytes:
    return _BLOCK.pack(b.ssrc, (b.fraction_lost & 0xFF) << 24 | (b.lost & 0xFFFFFF),
                       b.highest_seq & 0xFFFFFFFF, b.jitter & 0xFFFFFFFF, b.lsr, b.dlsr)


def build_sr(ssrc: int, ntp: int, rtp_ts: int, packets: int, octets: int,
             blocks: list[ReportBlock]) -> bytes:
    body = _SENDER_INFO.pack(ssrc, ntp >> 32, ntp & 0xFFFFFFFF, rtp_ts & 0xFFFFFFFF,
                             packets & 0xFFFFFFFF) + struct.pack("!I", octets & 0xFFFFFFFF)
    return _packet(SR, len(blocks), body + b"".join(_block_bytes(b) for b in blocks))


def build_rr(ssrc: int, blocks: list[ReportBlock]) -> bytes:
    return _packet(RR, len(blocks),
                   struct.pack("!I", ssrc) + b"".join(_block_bytes(b) for b in blocks))


def build_sdes(ssrc: int, cname: str) -> bytes:
    text = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, 1, len(text)) + text + b"\x00"
    return _packet(SDES, 1, chunk + bytes(-len(chunk) % 4))


def build_bye(ssrc: int) -> bytes:
    return _packet(BYE, 1, struct.pack("!I", ssrc))


# -- statistics ---------------------------------------------------------------------------


class ReceiverStats:
    """One received stream's RFC 3550 reception statistics."""

    def __init__(self, clock_rate: int = 48_000) -> None:
        self.rate = clock_rate
        self.ssrc: int | None = None
        self._lsr = 0  # middle NTP bits of the last SR received, and when (seconds)
        self._lsr_at = 0.0
        self._restart(None, 0)

    def _restart(self, ssrc: int | None, seq: int) -> None:
        self.ssrc = ssrc
        self.received = 0
        self._base = seq
        self._max = seq
        self._cycles = 0
        self._transit: int | None = None
        self.jitter = 0.0  # RTP clock units
        self._expected_prior = 0
        self._received_prior = 0

    def on_packet(self, ssrc: int, seq: int, timestamp: int, arrival_s: float) -> None:
        if ssrc != self.ssrc:  # the first packet, or the stream restarted under a new SSRC
            self._restart(ssrc, seq)
        self.received += 1
        d = (seq - self._max) & 0xFFFF
        if 0 < d < 0x8000:  # newer (a gap is loss, counted from the expected count)
            if seq < self._max:
                self._cycles += 0x10000
            self._max = seq
        transit = int(arrival_s * self.rate) - timestamp
        if self._transit is not None:
            diff = ((transit - self._transit + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            self.jitter += (abs(diff) - self.jitter) / 16
        self._transit = transit

    def on_sender_report(self, ntp_mid_bits: int, now_s: float) -> None:
        self._lsr, self._lsr_at = ntp_mid_bits, now_s

    @property
    def highest_seq(self) -> int:
        return self._cycles + self._max

    @property
    def lost(self) -> int:
        if self.ssrc is None:
            return 0
        return self.highest_seq - self._base + 1 - self.received

    def report_block(self, now_s: float) -> ReportBlock | None:
        """The block for the next SR/RR (None before the first packet); starts a new
        interval for the fraction lost."""
        if self.ssrc is None:
            return None
        expected = self.highest_seq - self._base + 1
        exp_int = expected - self._expected_prior
        rec_int = self.received - self._received_prior
        self._expected_prior, self._received_prior = expected, self.received
        lost_int = exp_int - rec_int
        fraction = 0 if exp_int <= 0 or lost_int <= 0 else min(255, (lost_int << 8) // exp_int)
        lost = max(-0x800000, min(0x7FFFFF, expected - self.received))
        dlsr = int((now_s - self._lsr_at) * 65536) & 0xFFFFFFFF if self._lsr else 0
        return ReportBlock(self.ssrc, fraction, lost, self.highest_seq, int(self.jitter),
                           self._lsr, dlsr)


class SenderStats:
    """Our stream as sent, for its sender reports, and the RTT its receiver's reports give.
    The datapath counts ``packets`` and ``octets`` (payload bytes) itself as it sends."""

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.packets = 0
        self.octets = 0
        self.rtt_s: float | None = None
        self.remote_lost = 0
        self.remote_jitter = 0

    def sender_report(self, blocks: list[ReportBlock], now_unix: float, rtp_now: int) -> bytes:
        """``rtp_now`` is the stream's RTP time at ``now_unix``, so the browser's NTP <-> RTP
        mapping (lip-sync, its jitter estimate of us) stays exact."""
        return build_sr(self.ssrc, ntp_time(now_unix), rtp_now, self.packets, self.octets,
                        blocks)

    def on_report_block(self, block: ReportBlock, now_unix: float) -> None:
        """A receiver's block about our stream: its loss and jitter, and the round trip
        (RFC 3550 6.4.1: arrival - LSR - DLSR, in 1/65536 s)."""
        self.remote_lost, self.remote_jitter = block.lost, block.jitter
        if block.lsr:
            units = (ntp_mid(now_unix) - block.lsr - block.dlsr) & 0xFFFFFFFF
            if units < 0x80000000:  # not a clock step backwards
                self.rtt_s = units / 65536
