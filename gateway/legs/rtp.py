"""RTP packets read and written as bytes (RFC 3550 section 5.1), for the owned datapath.

aiortc parses every packet into an ``RtpPacket`` with a ``HeaderExtensions`` object and
serializes one per packet sent; for one Opus voice each way that is most of the per-packet
Python work. Here a received packet is read with one ``struct`` call into the four numbers
the gateway uses (payload type, sequence number, timestamp, SSRC) and the payload's bounds;
a sent packet is a header prefix built once per call (version, payload type, SSRC and the
header extensions, which do not change) with the sequence number and timestamp packed in.

Pure and synchronous: no asyncio, no aiortc.
"""

from __future__ import annotations

import struct

#: One-byte header extensions (RFC 8285) start with this profile.
ONE_BYTE_PROFILE = 0xBEDE
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"

_HEAD = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence number, timestamp, SSRC
_EXT = struct.Struct("!HH")  # profile, length in 32-bit words
_SEQ_TS = struct.Struct("!HI")


class MalformedRtp(ValueError):
    pass


def is_rtcp(data: bytes) -> bool:
    """RTCP or RTP on one port (RFC 5761): RTCP packet types 192-223 sit where RTP's marker
    bit and payload type are, and no RTP payload type may use those values."""
    return len(data) > 1 and 192 <= data[1] <= 223


def parse_rtp(data: bytes) -> tuple[int, int, int, int, int, int]:
    """(payload type, sequence number, timestamp, SSRC, payload start, payload end).

    Raises :class:`MalformedRtp` for a packet that is not RTP version 2 or whose lengths
    (CSRCs, extension, padding) run past its end."""
    if len(data) < 12:
        raise MalformedRtp("RTP packet shorter than its 12-byte header")
    b0, b1, seq, ts, ssrc = _HEAD.unpack_from(data)
    if b0 >> 6 != 2:
        raise MalformedRtp("not RTP version 2")
    start = 12 + (b0 & 0x0F) * 4
    if b0 & 0x10:  # a header extension: skipped, the gateway reads none of them
        if len(data) < start + 4:
            raise MalformedRtp("RTP header extension runs past the packet")
        start += 4 + _EXT.unpack_from(data, start)[1] * 4
    end = len(data)
    if b0 & 0x20:  # padding: its length is the last byte
        end -= data[-1]
    if start > end:
        raise MalformedRtp("RTP header or padding runs past the packet")
    return b1 & 0x7F, seq, ts, ssrc, start, end


def one_byte_extensions(elements: list[tuple[int, bytes]]) -> bytes:
    """An RFC 8285 one-byte header extension block (profile, length, elements, padding)."""
    body = bytearray()
    for ext_id, value in elements:
        if not 1 <= ext_id <= 14 or not 1 <= len(value) <= 16:
            raise ValueError(f"extension {ext_id} of {len(value)} bytes does not fit "
                             "the one-byte form")
        body.append(ext_id << 4 | (len(value) - 1))
        body += value
    body += bytes(-len(body) % 4)
    return _EXT.pack(ONE_BYTE_PROFILE, len(body) // 4) + bytes(body)


class RtpWriter:
    """The packets of one outgoing stream: a fixed header prefix, sequence number and
    timestamp packed per packet. ``seq`` is the next sequence number to use."""

    def __init__(self, payload_type: int, ssrc: int, *, seq: int = 0,
                 extensions: list[tuple[int, bytes]] | None = None) -> None:
        ext = one_byte_extensions(extensions) if extensions else b""
        first = 0x80 | (0x10 if ext else 0)
        # The marker bit is never set: Opus over RTP has no use for it (RFC 7587 4.1)
        # beyond the first packet of a talkspurt, which a continuous stream does not have.
        self._first = bytes([first, payload_type & 0x7F])
        self._ssrc = struct.pack("!I", ssrc)
        self._ext = ext
        self.ssrc = ssrc
        self.seq = seq & 0xFFFF

    def build(self, timestamp: int, payload: bytes) -> bytes:
        """The next packet; advances the sequence number."""
        seq = self.seq
        self.seq = (seq + 1) & 0xFFFF
        return b"".join((self._first, _SEQ_TS.pack(seq, timestamp & 0xFFFFFFFF), self._ssrc,
                         self._ext, payload))


class OpusRtp:
    """A received Opus packet held by the jitter buffer: the three fields it and the
    decoder read, under the names aiortc's ``RtpPacket`` uses for them (so
    :class:`~gateway.legs.jitter.AdaptiveJitterBuffer` and
    :class:`~gateway.legs.inbound.InboundOpus` take either)."""

    __slots__ = ("sequence_number", "timestamp", "_data")

    def __init__(self, sequence_number: int, timestamp: int, data: bytes) -> None:
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self._data = data
