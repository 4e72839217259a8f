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

import time
from collections.abc import Callable

import pylibsrtp

from ..audio.formats import FRAME_MS
from .handoff import SelectedPair
from .inbound import InboundOpus
from .media_clock import MediaClock, media_clock
from .opus_out import RTP_RATE, VoiceOpusEncoder
from .playout import Playout
from .rtcp import Nack, Pli
from .rtp import OpusRtp
from .srtp_session import SrtpSession
from .tracks import FrameObserver

TICKS = RTP_RATE * FRAME_MS // 1000  # RTP clock per 20 ms frame
HISTORY = 64  # packets kept for retransmission on NACK (1.28 s)


class OwnedDatapath(SrtpSession):
    def __init__(self, playout: Playout, on_frame: FrameObserver, encoder: VoiceOpusEncoder,
                 inbound: InboundOpus, *, on_encode: Callable[[float], None] | None = None,
                 clock: MediaClock | None = None) -> None:
        super().__init__(RTP_RATE)
        self._playout = playout
        self._on_frame = on_frame
        self._encoder = encoder
        self._inbound = inbound
        self._on_encode = on_encode
        self._clock = clock
        self._index = 0
        self._history: list[bytes] = [b""] * HISTORY
        self.nacks = 0
        self.retransmitted = 0
        self.plis = 0
        self._rtcp_handlers[Nack] = self._on_nack
        self._rtcp_handlers[Pli] = self._on_pli

    def _started(self, sel: SelectedPair) -> None:
        if self._clock is None:
            self._clock = media_clock()
        self._clock.add(self)

    async def stop(self) -> None:
        """Off the clock, a BYE if still connected, datagrams back to aiortc."""
        if self._clock is not None:
            await self._clock.remove(self)
        self._hand_back()

    # -- in -----------------------------------------------------------------------------

    def _on_media(self, seq: int, ts: int, payload: bytes) -> None:
        self._inbound.add(OpusRtp(seq, ts, payload))

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
        # The RTP time of the frame sent in this pass: the clock's pass is "now".
        self._report(self._ts0 + (self._index - 1) * TICKS)

    # -- metrics ------------------------------------------------------------------------

    def quality(self) -> tuple[int, float | None, float | None]:
        """(cumulative packets lost of the caller's stream, its jitter in s, round trip s)."""
        jitter = self.rx.jitter / RTP_RATE if self.rx.ssrc is not None else None
        return max(0, self.rx.lost), jitter, self.tx.rtt_s if self.tx is not None else None
