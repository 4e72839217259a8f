"""Taking a call's RTP over from aiortc once DTLS is up (the owned datapath's, and the bench's
light callers', way in).

When DTLS completes, aiortc calls the transceiver's ``sender.send(parameters)`` and
``receiver.receive(parameters)`` to start its RTP machinery. :func:`take_over` shadows both
methods with instance attributes, so they hand the negotiated stream and the DTLS transport to
the caller's callbacks instead (aiortc's ``stop()`` of either is then a no-op, as neither was
started). :func:`selected_pair` reads what those callbacks need from the DTLS transport.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCRtpTransceiver

from .rtp import MID_URI, RtpWriter


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Our stream as negotiated: its packet writer (payload type, SSRC, MID extension) and
    the RTCP CNAME."""
    writer: RtpWriter
    cname: str


def take_over(transceiver: RTCRtpTransceiver, on_send: Callable[[Outgoing, Any], None],
              on_receive: Callable[[int, frozenset[int], Any], None]) -> None:
    """Before the offer: at connect, ``on_send(outgoing, dtls)`` and
    ``on_receive(own_ssrc, payload_types, dtls)`` run in place of aiortc's sender/receiver."""
    sender, receiver = transceiver.sender, transceiver.receiver

    async def send(parameters: Any) -> None:
        ssrc = int(sender._ssrc)
        mid_id = next((e.id for e in parameters.headerExtensions if e.uri == MID_URI), None)
        ext = [(mid_id, str(parameters.muxId).encode())] \
            if mid_id is not None and parameters.muxId else []
        writer = RtpWriter(parameters.codecs[0].payloadType, ssrc,
                           seq=random.getrandbits(16), extensions=ext)
        on_send(Outgoing(writer, str(parameters.rtcp.cname or "")), sender.transport)

    async def receive(parameters: Any) -> None:
        on_receive(int(sender._ssrc), frozenset(c.payloadType for c in parameters.codecs),
                   receiver.transport)

    setattr(sender, "send", send)  # noqa: B010  # shadowing a method on purpose
    setattr(receiver, "receive", receive)  # noqa: B010


@dataclass(frozen=True, slots=True)
class SelectedPair:
    """What a datapath needs of a connected call: the aioice connection (whose
    ``data_received`` gets every datagram of the call), the nominated pair (its protocol and
    the remote address) and the SRTP sessions aiortc keyed."""
    connection: Any
    pair: Any
    rx_srtp: Any
    tx_srtp: Any


def selected_pair(dtls: Any) -> SelectedPair | None:
    """None if the call has no nominated pair or no SRTP keys (not connected)."""
    conn = dtls.transport._connection  # the aioice Connection under the ICE transport
    pair = conn._nominated.get(1)
    if pair is None or dtls._rx_srtp is None:
        return None
    return SelectedPair(conn, pair, dtls._rx_srtp, dtls._tx_srtp)
