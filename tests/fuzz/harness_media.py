"""Media-plane harnesses: SDP offers, STUN, RTP/RTCP into the gateway's inbound path, SCTP.

Expected exceptions are the ones the code's own caller catches: the gateway answers a bad
offer with ``ApiError`` 400; aioice drops a datagram whose parse raises ``ValueError``; aiortc's
DTLS transport drops RTP/RTCP whose parse raises ``ValueError`` (anything else ends the
peer's transport: a crash here); its SCTP transport drops a packet on ``ValueError``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from aioice import stun
from aiortc.codecs import HEADER_EXTENSIONS
from aiortc.rtcrtpparameters import RTCRtpParameters
from aiortc.rtcsctptransport import InitChunk, parse_packet
from aiortc.rtp import HeaderExtensionsMap, RtcpPacket, RtpPacket, is_rtcp
from google_crc32c import value as crc32c

from gateway.audio.opus import OpusEncoder
from gateway.errors import ApiError
from gateway.legs.inbound import InboundOpus
from gateway.legs.jitter import AdaptiveJitterBuffer
from gateway.legs.webrtc import WebRtcLeg, accept_offer

from .harness import Harness, framed, loop, records

SEEDS = Path(__file__).parent / "seeds"

# -- SDP -----------------------------------------------------------------------------------


class _Sink:
    def on_client_text(self, text: str) -> None:
        pass

    def on_caller_audio(self, pcm: object, wire: bytes | None = None) -> None:
        pass

    def on_agent_frame(self, frame: object, offset_ms: float) -> None:
        pass

    def on_playout(self, started: bool, response_id: str) -> None:
        pass

    def on_leg_gone(self, reason: str) -> None:
        pass


async def _offer(text: str, answer: bool) -> None:
    leg = WebRtcLeg(_Sink(), max_buffer_s=1.0, max_event_bytes=65536, dead_peer_s=30.0)
    try:
        if answer:
            await leg.answer(text)
        else:
            await accept_offer(leg.pc, text, leg.inbound)
    except ApiError as e:
        assert e.status == 400 and e.code == "invalid_sdp", (e.status, e.code)
    finally:
        await leg.close()


def sdp_input(data: bytes) -> None:
    """The offer path of ``POST /v1/realtime/calls`` as :class:`WebRtcLeg` runs it: check_offer,
    aiortc's parser, the gateway's transceiver set-up; with the first byte odd also the
    answer (aiortc gathers host candidates: no packet leaves), then the leg's close."""
    if not data:
        return
    loop().run_until_complete(_offer(data[1:].decode("utf-8", "replace"), data[0] & 1 == 1))


_OFFER = (SEEDS / "offer-aiortc.sdp").read_bytes()
SDP = Harness("sdp", sdp_input, (
    b"\x00" + _OFFER, b"\x01" + _OFFER, b"\x00" + _OFFER.replace(b"\r\n", b"\n"),
    b"\x01v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n",
    b"\x01" + _OFFER.split(b"m=application")[0]),
    ("gateway/legs/webrtc.py", "aiortc/sdp.py", "aiortc/rtcpeerconnection.py"),
    (b"\r\na=", b"m=audio ", b"opus/48000/2", b"a=fingerprint:sha-256 ", b"a=ice-ufrag:",
     b"a=setup:", b"a=extmap:", b"a=fmtp:", b"a=ssrc-group:FID ", b"m=application "))

# -- STUN ----------------------------------------------------------------------------------

_KEY = b"0123456789abcdef"


def stun_input(data: bytes) -> None:
    """A datagram on a call's UDP port, as aioice parses it (with and without integrity)."""
    try:
        msg = stun.parse_message(data)
    except ValueError:
        return  # aioice hands it on as media (ice.py datagram_received)
    msg.check_message_integrity(_KEY)  # what aioice does with a request and its responses
    repr(msg)


def _stun_seed() -> bytes:
    m = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST,
                     transaction_id=b"fuzzfuzzfuzz")
    m.attributes["USERNAME"] = "abcd:efgh"
    m.attributes["PRIORITY"] = 1853824767
    m.attributes["ICE-CONTROLLING"] = 1234
    m.attributes["USE-CANDIDATE"] = None
    m.add_message_integrity(_KEY)
    m.add_fingerprint()
    r = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE,
                     transaction_id=b"fuzzfuzzfuzz")
    r.attributes["XOR-MAPPED-ADDRESS"] = ("192.0.2.1", 4242)
    r.attributes["ERROR-CODE"] = (487, "Role Conflict")
    return bytes(m) + b"|" + bytes(r)


STUN = Harness("stun", stun_input, tuple(_stun_seed().split(b"|")), ("aioice/stun.py",),
               (b"\x21\x12\xa4\x42", b"\x00\x06", b"\x00\x08", b"\x80\x28", b"\x00\x20"))

# -- RTP / RTCP into the gateway's jitter buffer and decoder --------------------------------

_EXT = HeaderExtensionsMap()
# What the gateway negotiates for audio (aiortc's audio extensions: mid, ssrc-audio-level).
_EXT.configure(RTCRtpParameters(headerExtensions=HEADER_EXTENSIONS["audio"]))


def rtp_input(data: bytes) -> None:
    """A stream of packets as aiortc's DTLS transport hands them on: RTCP parsed, RTP parsed
    and given to :class:`InboundOpus` (the gateway's jitter buffer and libopus decoder)."""
    got: list[int] = []
    inbound = InboundOpus(lambda pcm: got.append(len(pcm)),
                          AdaptiveJitterBuffer(wait=1, max_wait=6, capacity=16))
    for raw in records(data):
        if is_rtcp(raw):
            try:
                RtcpPacket.parse(raw)
            except ValueError:
                pass
            continue
        try:
            packet = RtpPacket.parse(raw, _EXT)
        except ValueError:
            continue
        packet._data = packet.payload  # what aiortc's Opus depayloader does
        if packet.payload:
            inbound.add(packet)
    assert all(n >= 0 for n in got)


def _rtp_seeds() -> tuple[bytes, ...]:
    enc = OpusEncoder(48000, 1, bitrate=24_000)
    tone = (np.sin(np.arange(960) * 0.05) * 8000).astype(np.int16)
    pay = bytes(enc.encode(tone.tobytes()))
    pkts = [RtpPacket(payload_type=111, sequence_number=s, timestamp=s * 960, ssrc=7,
                      payload=pay) for s in (1, 2, 4, 3, 6, 5, 9)]
    pkts[0].extensions.audio_level = (True, 30)
    pkts[0].extensions.mid = "0"
    rtp = [p.serialize(_EXT) for p in pkts]
    rr = bytes.fromhex("81c90007000000070000000700000000000000050000000000000000")
    return (framed(*rtp), framed(rtp[0], rr, rtp[2]), framed(*rtp[::-1]))


RTP = Harness("rtp", rtp_input, _rtp_seeds(),
              ("gateway/legs/inbound.py", "gateway/legs/jitter.py", "aiortc/rtp.py"),
              (b"\xbe\xde", b"\x10\x00", b"\x80\x6f", b"\x81\xc9", b"\x80\xc8"))

# -- SCTP -----------------------------------------------------------------------------------


def _fix_checksum(data: bytes) -> bytes:
    """Put the right CRC32c in: otherwise every mutation stops at the checksum."""
    if len(data) < 12:
        return data
    body = data[0:8] + b"\x00\x00\x00\x00" + data[12:]
    return data[0:8] + struct.pack("<L", crc32c(body)) + data[12:]


def sctp_input(data: bytes) -> None:
    """A packet of the data channel's SCTP association, as aiortc parses it."""
    try:
        _src, _dst, _tag, chunks = parse_packet(_fix_checksum(data))
    except ValueError:
        return
    for chunk in chunks:
        bytes(chunk)
        repr(chunk)


def _sctp_seed() -> bytes:
    init = InitChunk()
    init.initiate_tag = 1
    init.advertised_rwnd = 131072
    init.outbound_streams = 65535
    init.inbound_streams = 65535
    init.initial_tsn = 42
    init.params.append((0xC000, b"\x01\x02"))
    header = struct.pack("!HHL", 5000, 5000, 0)
    return _fix_checksum(header + b"\x00\x00\x00\x00" + bytes(init))


def _sctp_data_seed() -> bytes:
    # DATA chunk (type 0, flags B|E) carrying a DCEP open for "oai-events" (ppid 50).
    dcep = b"\x03\x00\x00\x00\x00\x00\x00\x0a\x00\x00" + b"oai-events"
    body = struct.pack("!LHHL", 42, 0, 0, 50) + dcep
    chunk = struct.pack("!BBH", 0, 3, 4 + len(body)) + body
    chunk += b"\x00" * (-len(chunk) % 4)
    sack = struct.pack("!BBHLLHH", 3, 0, 16, 41, 131072, 0, 0)
    header = struct.pack("!HHL", 5000, 5000, 1)
    return _fix_checksum(header + b"\x00\x00\x00\x00" + chunk + sack)


SCTP = Harness("sctp", sctp_input, (_sctp_seed(), _sctp_data_seed()),
               ("aiortc/rtcsctptransport.py",),
               (b"\x00\x03", b"\x01\x00", b"\x03\x00", b"\xc0\x00", b"\x80\x08"))
