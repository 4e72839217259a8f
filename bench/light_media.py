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

from typing import Any

from gateway.legs.handoff import SelectedPair
from gateway.legs.media_clock import MediaClock
from gateway.legs.srtp_session import SrtpSession

from .caller_audio import FRAME, RATE, HeardAudio


class LightMedia(SrtpSession):
    """One call's media (a :class:`~gateway.legs.media_clock.ClockSlot`)."""

    def __init__(self, heard: HeardAudio, packets: list[bytes], clock: MediaClock) -> None:
        super().__init__(RATE)
        self.heard = heard
        self._packets = packets
        self._clock = clock
        self.sent = 0
        self._protocol: Any = None
        self._aioice_datagram: Any = None

    def _not_connected(self) -> None:
        raise RuntimeError("light caller: no selected pair or SRTP keys at connect")

    def _started(self, sel: SelectedPair) -> None:
        # The selected pair's socket: media straight here, the rest to aioice as before.
        self._protocol = sel.pair.protocol
        self._aioice_datagram = sel.pair.protocol.datagram_received
        sel.pair.protocol.datagram_received = self._on_socket
        self._clock.add(self)

    async def stop(self) -> None:
        """Off the clock, a BYE, datagrams back to aioice and aiortc."""
        await self._clock.remove(self)
        self._hand_back()
        if self._protocol is not None:
            self._protocol.__dict__.pop("datagram_received", None)
            self._protocol = None

    # -- in -----------------------------------------------------------------------------

    def _on_socket(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if data and 127 < data[0] < 192 and (addr[0], addr[1]) == self._addr:
            self._on_datagram(data, 1)
            return
        assert self._aioice_datagram is not None
        self._aioice_datagram(data, addr)

    def _on_media(self, seq: int, ts: int, payload: bytes) -> None:
        self.heard.packet(ts, payload)

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
        self._report(self._ts0 + (self.sent - 1) * FRAME)

    # -- what the driver reads ------------------------------------------------------------

    def rtp_stats(self) -> dict[str, int]:
        """As :func:`bench.clients.rtp_stats` reads from aiortc's getStats()."""
        return {"rtp_received": self.rx.received, "rtp_lost": max(0, self.rx.lost),
                "remote_lost": self.tx.remote_lost if self.tx is not None else 0}
