"""A bench caller's RTP and RTCP once DTLS is up, without aiortc's per-call media machinery.

``bench.clients --callers light``: aiortc still does the caller's signalling (the same offer,
with the ``oai-events`` data channel), ICE, DTLS and SCTP, so the server under test sets up
the call exactly as for any aiortc peer. When DTLS completes, aiortc calls the transceiver's
``sender.send``/``receiver.receive``; :meth:`LightMedia.attach` shadows both, as the
gateway's own :class:`gateway.legs.datapath.OwnedDatapath` does, and from then on:

- **out**: one :class:`~gateway.legs.media_clock.MediaClock` per caller process calls every
  call's :meth:`LightMedia.tick` in one pass each 20 ms: the next packet of the pre-encoded
  Opus loop (:func:`bench.clients.opus_loop`) behind a fixed RTP header
  (:class:`~gateway.legs.rtp.RtpWriter`, with the MID extension aiortc would send), SRTP
  from the session aiortc keyed, one ``sendto``. No track, no task, no ``RtpPacket``.
- **in**: datagrams of the selected pair's socket come here first (a shortcut in front of
  aioice's STUN parse, which would raise and catch per media packet); SRTP is unprotected,
  the header read with one ``struct`` call (:func:`~gateway.legs.rtp.parse_rtp`), and the
  payload judged by :class:`bench.caller_audio.HeardAudio` (decoded with libopus, as in the
  aiortc mode). DTLS and STUN still go to aiortc/aioice.
- **RTCP**: once a second (the clock's RTCP turn) a compound SR with a report block on the
  server's stream + SDES, as a browser sends; the server's SR/RR give our loss as it counts
  it (``remote_lost``), its SR's time is echoed in our block (LSR/DLSR), a BYE on close.

What the server sees is what an aiortc caller sends: SRTP Opus every 20 ms on the same
SSRC and payload type, the MID extension, RTCP sender and receiver reports. What it does not
see: aiortc's audio-level extension (the gateway reads none) and separate SR and RR packets
(one compound packet instead, as Chrome sends).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aiortc import RTCRtpTransceiver

from gateway.legs.handoff import Outgoing, selected_pair, take_over
from gateway.legs.media_clock import MediaClock
from gateway.legs.rtcp import (
    ReceiverReport,
    ReceiverStats,
    ReportBlock,
    SenderReport,
    SenderStats,
    build_bye,
    build_sdes,
    parse_rtcp,
)
from gateway.legs.rtp import MalformedRtp, RtpWriter, parse_rtp

from .caller_audio import FRAME, RATE, HeardAudio


class LightMedia:
    """One call's media (a :class:`~gateway.legs.media_clock.ClockSlot`)."""

    def __init__(self, heard: HeardAudio, packets: list[bytes], clock: MediaClock) -> None:
        self.heard = heard
        self._packets = packets
        self._clock = clock
        self.rx = ReceiverStats(RATE)
        self.tx: SenderStats | None = None
        self.sent = 0
        self.srtp_errors = 0
        self.malformed = 0
        self.send_errors = 0
        self.running = False
        self._writer: RtpWriter | None = None
        self._ts0 = random.getrandbits(32)
        self._ssrc = 0
        self._cname = ""
        self._rx_pts: frozenset[int] = frozenset()
        self._rx_srtp: Any = None
        self._tx_srtp: Any = None
        self._conn: Any = None
        self._protocol: Any = None
        self._sendto: Callable[[bytes, tuple[str, int]], None] | None = None
        self._addr: tuple[str, int] = ("", 0)
        self._aioice_datagram: Callable[[bytes, tuple[Any, ...]], None] | None = None
        self._aiortc_datagram: Callable[[bytes, int], None] | None = None

    # -- taking over from aiortc ------------------------------------------------------

    def attach(self, transceiver: RTCRtpTransceiver) -> None:
        """Before the offer: the transceiver's connect-time ``send``/``receive`` start this
        instead of aiortc's RTP and RTCP tasks (as for the gateway's owned datapath)."""
        take_over(transceiver, self._on_send, self._on_receive)

    def _on_send(self, out: Outgoing, dtls: Any) -> None:
        self._ssrc, self._cname, self._writer = out.writer.ssrc, out.cname, out.writer
        self.tx = SenderStats(self._ssrc)
        self._start(dtls)

    def _on_receive(self, own_ssrc: int, payload_types: frozenset[int], dtls: Any) -> None:
        self._ssrc = self._ssrc or own_ssrc
        self._rx_pts = payload_types
        self._start(dtls)

    def _start(self, dtls: Any) -> None:
        if self.running:
            return
        sel = selected_pair(dtls)
        if sel is None:
            raise RuntimeError("light caller: no selected pair or SRTP keys at connect")
        conn, pair = sel.connection, sel.pair
        self._conn = conn
        self._rx_srtp, self._tx_srtp = sel.rx_srtp, sel.tx_srtp
        self._sendto, self._addr = pair.protocol.transport.sendto, pair.remote_addr
        self._aiortc_datagram = conn.data_received
        conn.data_received = self._on_datagram
        # The selected pair's socket: media straight here, the rest to aioice as before.
        self._protocol = pair.protocol
        self._aioice_datagram = pair.protocol.datagram_received
        pair.protocol.datagram_received = self._on_socket
        self.running = True
        self._clock.add(self)

    async def stop(self) -> None:
        """Off the clock, a BYE, datagrams back to aioice and aiortc."""
        await self._clock.remove(self)
        if self.running and self._writer is not None:
            self._send_rtcp(build_bye(self._ssrc))
        self.running = False
        if self._protocol is not None:
            self._protocol.__dict__.pop("datagram_received", None)
            self._protocol = None
        if self._conn is not None:
            self._conn.__dict__.pop("data_received", None)
            self._conn = None

    # -- in -----------------------------------------------------------------------------

    def _on_socket(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if data and 127 < data[0] < 192 and (addr[0], addr[1]) == self._addr:
            self._on_datagram(data, 1)
            return
        assert self._aioice_datagram is not None
        self._aioice_datagram(data, addr)

    def _on_datagram(self, data: bytes, component: int) -> None:
        if not data or not 127 < data[0] < 192:  # DTLS (SCTP, the data channel): aiortc's
            assert self._aiortc_datagram is not None
            self._aiortc_datagram(data, component)
            return
        if len(data) > 1 and 192 <= data[1] <= 223:
            self._on_rtcp(data)
            return
        try:
            plain = self._rx_srtp.unprotect(data)
        except pylibsrtp.Error:
            self.srtp_errors += 1
            return
        try:
            pt, seq, ts, ssrc, start, end = parse_rtp(plain)
        except MalformedRtp:
            self.malformed += 1
            return
        if pt not in self._rx_pts:
            self.malformed += 1
            return
        self.rx.on_packet(ssrc, seq, ts, time.monotonic())
        self.heard.packet(ts, plain[start:end])

    def _on_rtcp(self, data: bytes) -> None:
        try:
            plain = self._rx_srtp.unprotect_rtcp(data)
        except pylibsrtp.Error:
            self.srtp_errors += 1
            return
        now = time.time()
        for item in parse_rtcp(plain):
            if isinstance(item, SenderReport):
                if item.ssrc == self.rx.ssrc:
                    self.rx.on_sender_report(item.ntp_mid, time.monotonic())
                self._our_blocks(item.blocks, now)
            elif isinstance(item, ReceiverReport):
                self._our_blocks(item.blocks, now)

    def _our_blocks(self, blocks: list[ReportBlock], now: float) -> None:
        if self.tx is not None:
            for b in blocks:
                if b.ssrc == self._ssrc:
                    self.tx.on_report_block(b, now)

    # -- out ----------------------------------------------------------------------------

    def tick(self) -> None:
        writer = self._writer
        if writer is None or not self.running:
            return
        i = self.sent
        payload = self._packets[i % len(self._packets)]
        self._send(self._tx_srtp.protect(writer.build(self._ts0 + i * FRAME, payload)))
        if self.running:
            self.sent = i + 1
            tx = self.tx
            assert tx is not None
            tx.packets += 1
            tx.octets += len(payload)

    def skip(self, slots: int) -> None:
        # The process stalled: the frames of the slots that went by were never captured (a
        # browser's microphone does not send the past either); the RTP clock moves on.
        self._ts0 += slots * FRAME

    def rtcp(self) -> None:
        if not self.running or self.tx is None:
            return
        block = self.rx.report_block(time.monotonic())
        head = self.tx.sender_report([block] if block is not None else [], time.time(),
                                     self._ts0 + (self.sent - 1) * FRAME)
        self._send_rtcp(head + build_sdes(self._ssrc, self._cname))

    def _send_rtcp(self, plain: bytes) -> None:
        try:
            self._send(self._tx_srtp.protect_rtcp(plain))
        except pylibsrtp.Error:
            self.send_errors += 1

    def _send(self, data: bytes) -> None:
        assert self._sendto is not None
        try:
            self._sendto(data, self._addr)
        except (OSError, RuntimeError):  # the socket went: the call is closing
            self.send_errors += 1
            self.running = False

    # -- what the driver reads ------------------------------------------------------------

    def rtp_stats(self) -> dict[str, int]:
        """As :func:`bench.clients.rtp_stats` reads from aiortc's getStats()."""
        return {"rtp_received": self.rx.received, "rtp_lost": max(0, self.rx.lost),
                "remote_lost": self.tx.remote_lost if self.tx is not None else 0}
