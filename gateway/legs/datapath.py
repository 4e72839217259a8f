"""The owned datapath (``media.datapath = "owned"``): a call's RTP and RTCP once DTLS is up.

aiortc keeps signaling, ICE, DTLS, SCTP and the data channel. When DTLS completes, aiortc
calls the transceiver's ``sender.send(parameters)`` and ``receiver.receive(parameters)`` to
start its RTP machinery (an RTP task and an RTCP task per sender, an RTCP task per receiver,
an ``RtpPacket`` object per packet each way). :meth:`OwnedDatapath.attach` replaces those two
methods on the call's transceiver, so they hand this object the negotiated parameters and the
DTLS transport instead; from then on:

- **in**: the ICE connection's ``data_received`` (called by the socket's protocol, after the
  source filter of :mod:`gateway.legs.ice`) gives SRTP and SRTCP datagrams here, synchronously;
  DTLS datagrams still go to aiortc. RTP is unprotected with the ``pylibsrtp`` session aiortc
  keyed, read by :func:`~gateway.legs.rtp.parse_rtp`, counted
  (:class:`~gateway.legs.rtcp.ReceiverStats`) and pushed to the same
  :class:`~gateway.legs.inbound.InboundOpus` (jitter buffer, libopus, FEC/PLC) as on
  aiortc's path.
- **out**: the process-wide :class:`~gateway.legs.media_clock.MediaClock` calls :meth:`tick`
  every 20 ms: the same :class:`~gateway.legs.playout.Playout` pop, the same encoder, the same
  ``on_frame(frame, offset_ms)`` report as :class:`~gateway.legs.tracks.OutboundAudioTrack`,
  then the packet is built from a fixed header, protected and sent on the selected pair's
  socket (no task, no await).
- **RTCP**: once a second a compound SR (or RR) + SDES with the report block about the
  caller's stream; SR/RR from the browser give the round trip and its view of our stream;
  generic NACKs are answered from the last 64 packets; PLI has no meaning for audio and is
  counted.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aiortc import RTCRtpTransceiver

from ..audio.formats import FRAME_MS
from .handoff import Outgoing, selected_pair, take_over
from .inbound import InboundOpus
from .media_clock import MediaClock, media_clock
from .opus_out import RTP_RATE, VoiceOpusEncoder
from .playout import Playout
from .rtcp import (
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
    parse_rtcp,
)
from .rtp import MalformedRtp, OpusRtp, RtpWriter, parse_rtp
from .tracks import FrameObserver

log = logging.getLogger("gateway.webrtc")

TICKS = RTP_RATE * FRAME_MS // 1000  # RTP clock per 20 ms frame
HISTORY = 64  # packets kept for retransmission on NACK (1.28 s)


def _never() -> bool:
    return False


class OwnedDatapath:
    def __init__(self, playout: Playout, on_frame: FrameObserver, encoder: VoiceOpusEncoder,
                 inbound: InboundOpus, *, on_encode: Callable[[float], None] | None = None,
                 clock: MediaClock | None = None) -> None:
        self._playout = playout
        self._on_frame = on_frame
        self._encoder = encoder
        self._inbound = inbound
        self._on_encode = on_encode
        self._clock = clock
        self.rx = ReceiverStats(RTP_RATE)
        self.tx: SenderStats | None = None
        self._writer: RtpWriter | None = None
        self._cname = ""
        self._own_ssrc = 0
        self._ts0 = random.getrandbits(32)
        self._index = 0
        self._history: list[bytes] = [b""] * HISTORY
        self._rx_pts: frozenset[int] = frozenset()
        self._rx_srtp: Any = None
        self._tx_srtp: Any = None
        self._conn: Any = None
        self._sendto: Callable[[bytes, tuple[str, int]], None] | None = None
        self._closing: Callable[[], bool] = _never
        self._addr: tuple[str, int] = ("", 0)
        self._dtls: Any = None
        self._aiortc_datagram: Callable[[bytes, int], None] | None = None
        self.srtp_errors = 0
        self.malformed = 0
        self.other_payload = 0
        self.nacks = 0
        self.retransmitted = 0
        self.plis = 0
        self.send_errors = 0
        self.running = False
        self._rtcp_handlers: dict[type, Callable[[Any, float], None]] = {
            SenderReport: self._on_sr, ReceiverReport: self._on_rr, Nack: self._on_nack,
            Pli: self._on_pli}

    # -- taking over from aiortc ------------------------------------------------------

    def attach(self, transceiver: RTCRtpTransceiver) -> None:
        """Make the transceiver's connect-time ``send``/``receive`` start this datapath
        instead of aiortc's (:func:`~gateway.legs.handoff.take_over`)."""
        take_over(transceiver, self._on_send, self._on_receive)

    def _on_send(self, out: Outgoing, dtls: Any) -> None:
        self._own_ssrc, self._cname, self._writer = out.writer.ssrc, out.cname, out.writer
        self.tx = SenderStats(self._own_ssrc)
        self._start(dtls)

    def _on_receive(self, own_ssrc: int, payload_types: frozenset[int], dtls: Any) -> None:
        self._own_ssrc = self._own_ssrc or own_ssrc
        self._rx_pts = payload_types
        self._start(dtls)

    def _start(self, dtls: Any) -> None:
        if self.running:
            return
        sel = selected_pair(dtls)
        if sel is None:
            log.warning("owned datapath: no selected pair or SRTP keys at connect; no media")
            return
        self._dtls, self._conn = dtls, sel.connection
        self._rx_srtp, self._tx_srtp = sel.rx_srtp, sel.tx_srtp
        # The pair's protocol sends with its transport's sendto (a socket, or aioice's TURN
        # transport, which frames for the relay itself): synchronous either way.
        transport = sel.pair.protocol.transport
        self._sendto, self._addr = transport.sendto, sel.pair.remote_addr
        # A closed asyncio/uvloop transport does not raise on sendto: it logs a warning per
        # datagram. Its is_closing() is how a send learns the socket has gone.
        self._closing = getattr(transport, "is_closing", _never)
        self._aiortc_datagram = sel.connection.data_received
        sel.connection.data_received = self._on_datagram
        self.running = True
        if self._clock is None:
            self._clock = media_clock()
        self._clock.add(self)

    async def stop(self) -> None:
        """Off the clock, a BYE if still connected, datagrams back to aiortc."""
        if self._clock is not None:
            await self._clock.remove(self)
        if self.running and self._writer is not None:
            self._send_rtcp(build_bye(self._own_ssrc))
        self.running = False
        if self._conn is not None:
            self._conn.__dict__.pop("data_received", None)
            self._conn = None

    # -- in -----------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, component: int) -> None:
        if not data or not 127 < data[0] < 192:  # DTLS (20-63) and anything else: aiortc's
            assert self._aiortc_datagram is not None
            self._aiortc_datagram(data, component)
            return
        if len(data) > 1 and 192 <= data[1] <= 223:
            self._on_rtcp(data)
            return
        try:
            plain = self._rx_srtp.unprotect(data)
        except pylibsrtp.Error:
            self.srtp_errors += 1  # forged, replayed or keyed for another session
            return
        try:
            pt, seq, ts, ssrc, start, end = parse_rtp(plain)
        except MalformedRtp:
            self.malformed += 1
            return
        if pt not in self._rx_pts:
            self.other_payload += 1
            return
        self.rx.on_packet(ssrc, seq, ts, time.monotonic())
        self._inbound.add(OpusRtp(seq, ts, plain[start:end]))

    def _on_rtcp(self, data: bytes) -> None:
        try:
            plain = self._rx_srtp.unprotect_rtcp(data)
        except pylibsrtp.Error:
            self.srtp_errors += 1
            return
        now = time.time()
        for item in parse_rtcp(plain):
            self._rtcp_handlers[type(item)](item, now)

    def _on_sr(self, sr: SenderReport, now: float) -> None:
        if sr.ssrc == self.rx.ssrc:
            self.rx.on_sender_report(sr.ntp_mid, time.monotonic())
        self._our_blocks(sr.blocks, now)

    def _on_rr(self, rr: ReceiverReport, now: float) -> None:
        self._our_blocks(rr.blocks, now)

    def _our_blocks(self, blocks: list[ReportBlock], now: float) -> None:
        if self.tx is not None:
            for b in blocks:
                if b.ssrc == self._own_ssrc:
                    self.tx.on_report_block(b, now)

    def _on_nack(self, nack: Nack, now: float) -> None:
        if nack.media_ssrc != self._own_ssrc:
            return
        self.nacks += 1
        for seq in nack.lost:
            packet = self._history[seq % HISTORY]
            if packet and (packet[2] << 8 | packet[3]) == seq:
                try:
                    protected = self._tx_srtp.protect(packet)
                except pylibsrtp.Error:
                    self.send_errors += 1
                    continue
                self.retransmitted += 1
                self._send(protected)

    def _on_pli(self, pli: Pli, now: float) -> None:
        self.plis += 1  # a picture-loss request: audio has no key frame to send

    # -- out ----------------------------------------------------------------------------

    def tick(self) -> None:
        """This call's 20 ms slot (called by the media clock)."""
        writer = self._writer
        if writer is None or not self.running:
            return
        f = self._playout.pop()
        if self._on_encode is not None:
            t0 = time.perf_counter()
            payload = self._encoder.encode_payload(f.pcm if f is not None else None)
            self._on_encode(time.perf_counter() - t0)
        else:
            payload = self._encoder.encode_payload(f.pcm if f is not None else None)
        index = self._index
        self._on_frame(f, index * FRAME_MS)
        self._index = index + 1
        seq = writer.seq
        packet = writer.build(self._ts0 + index * TICKS, payload)
        self._history[seq % HISTORY] = packet
        self._send(self._tx_srtp.protect(packet))
        if not self.running:  # the send found the socket gone: nothing went out
            return
        tx = self.tx
        assert tx is not None
        tx.packets += 1
        tx.octets += len(payload)

    def skip(self, slots: int) -> None:
        if self._writer is not None:
            self._index += slots
            self._playout.drop(slots)

    def rtcp(self) -> None:
        if not self.running:
            return
        block = self.rx.report_block(time.monotonic())
        blocks = [block] if block is not None else []
        if self.tx is not None:
            # The RTP time of the frame sent in this pass: the clock's pass is "now".
            head = self.tx.sender_report(blocks, time.time(),
                                         self._ts0 + (self._index - 1) * TICKS)
        else:
            head = build_rr(self._own_ssrc, blocks)
        self._send_rtcp(head + build_sdes(self._own_ssrc, self._cname))

    def _send_rtcp(self, plain: bytes) -> None:
        try:
            self._send(self._tx_srtp.protect_rtcp(plain))
        except pylibsrtp.Error:
            self.send_errors += 1

    def _send(self, data: bytes) -> None:
        assert self._sendto is not None
        if self._closing():  # the ICE transport closed under us (the peer is going)
            self.send_errors += 1
            self.running = False
            return
        try:
            self._sendto(data, self._addr)
        except (OSError, RuntimeError):  # the socket failed under us: the peer is going
            self.send_errors += 1
            self.running = False

    # -- metrics ------------------------------------------------------------------------

    def quality(self) -> tuple[int, float | None, float | None]:
        """(cumulative packets lost of the caller's stream, its jitter in s, round trip s)."""
        jitter = self.rx.jitter / RTP_RATE if self.rx.ssrc is not None else None
        return max(0, self.rx.lost), jitter, self.tx.rtt_s if self.tx is not None else None
