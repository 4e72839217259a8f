"""One call's RTP session once aiortc has handed it over (:mod:`~gateway.legs.handoff`): what
the gateway's owned datapath and the bench's light callers share.

- **set-up**: at connect, the negotiated outgoing stream (writer, SSRC, CNAME) and payload
  types, the SRTP sessions aiortc keyed and the selected pair's socket; the ICE connection's
  ``data_received`` then calls :meth:`SrtpSession._on_datagram` (DTLS still goes to aiortc).
- **in**: SRTP unprotected, the header read with :func:`~gateway.legs.rtp.parse_rtp`, the
  stream counted (:class:`~gateway.legs.rtcp.ReceiverStats`), the payload handed to the
  subclass's :meth:`SrtpSession._on_media`. SRTCP: sender reports give the round trip of
  the peer's stream; report blocks about ours feed :class:`~gateway.legs.rtcp.SenderStats`;
  other RTCP types go to handlers a subclass registers.
- **out**: :meth:`SrtpSession._send` (stops at the first failure: the socket has gone),
  :meth:`SrtpSession._report` (an SR, or an RR if we send nothing, + SDES), a BYE on stop.

No task and no await on the per-packet paths.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aiortc import RTCRtpTransceiver

from .handoff import Outgoing, SelectedPair, selected_pair, take_over
from .rtcp import (
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
from .rtp import MalformedRtp, RtpWriter, parse_rtp

log = logging.getLogger("gateway.webrtc")


def _never() -> bool:
    return False


class SrtpSession:
    """Subclasses implement :meth:`_on_media` and :meth:`_started` (and may add RTCP
    handlers to ``self._rtcp_handlers``)."""

    def __init__(self, rtp_rate: int) -> None:
        self.rx = ReceiverStats(rtp_rate)
        self.tx: SenderStats | None = None
        self._writer: RtpWriter | None = None
        self._cname = ""
        self._own_ssrc = 0
        self._ts0 = random.getrandbits(32)
        self._rx_pts: frozenset[int] = frozenset()
        self._rx_srtp: Any = None
        self._tx_srtp: Any = None
        self._conn: Any = None
        self._sendto: Callable[[bytes, tuple[str, int]], None] | None = None
        self._closing: Callable[[], bool] = _never
        self._addr: tuple[str, int] = ("", 0)
        self._aiortc_datagram: Callable[[bytes, int], None] | None = None
        self.srtp_errors = 0
        self.malformed = 0
        self.other_payload = 0
        self.send_errors = 0
        self.running = False
        self._rtcp_handlers: dict[type, Callable[[Any, float], None]] = {
            SenderReport: self._on_sr, ReceiverReport: self._on_rr}

    # -- taking over from aiortc ------------------------------------------------------

    def attach(self, transceiver: RTCRtpTransceiver) -> None:
        """Before the offer: the transceiver's connect-time ``send``/``receive`` start this
        session instead of aiortc's RTP and RTCP tasks."""
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
            self._not_connected()
            return
        self._conn = sel.connection
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
        self._started(sel)

    def _not_connected(self) -> None:
        log.warning("owned datapath: no selected pair or SRTP keys at connect; no media")

    def _started(self, sel: SelectedPair) -> None:
        raise NotImplementedError

    def _hand_back(self) -> None:
        """A BYE if still sending, then datagrams back to aiortc."""
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
        self._on_media(seq, ts, plain[start:end])

    def _on_media(self, seq: int, ts: int, payload: bytes) -> None:
        raise NotImplementedError

    def _on_rtcp(self, data: bytes) -> None:
        try:
            plain = self._rx_srtp.unprotect_rtcp(data)
        except pylibsrtp.Error:
            self.srtp_errors += 1
            return
        now = time.time()
        handlers = self._rtcp_handlers
        for item in parse_rtcp(plain):
            handler = handlers.get(type(item))
            if handler is not None:
                handler(item, now)

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

    # -- out ----------------------------------------------------------------------------

    def _report(self, last_rtp_ts: int) -> None:
        """This second's compound RTCP: an SR (``last_rtp_ts``: the RTP time of the frame
        sent in this pass) or, if we send nothing, an RR; the block about the peer's stream;
        SDES."""
        if not self.running:
            return
        block = self.rx.report_block(time.monotonic())
        blocks = [block] if block is not None else []
        if self.tx is not None:
            head = self.tx.sender_report(blocks, time.time(), last_rtp_ts)
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
