"""Who may send media to a call's sockets: source filters on aioice's sockets.

Part of the WebRTC leg's network policy (:mod:`gateway.legs.ice` installs them on every
call's connection); kept apart because it is its own mechanism, tested on its own
(tests/test_webrtc_hardening.py).
"""

from __future__ import annotations

from typing import Any, cast

import aioice
import aioice.ice
import aioice.stun
from aioice.candidate import Candidate

_StunProtocol = aioice.ice.StunProtocol

#: Datagrams aioice may hold for aiortc (its queue has no bound; before ICE completes nobody
#: reads it). About 10 s of a call's RTP + RTCP; more are dropped and counted.
MAX_QUEUED_DATAGRAMS = 1024
#: Addresses of one peer that proved it knows the ICE password (a browser has a few).
MAX_VALIDATED_ADDRESSES = 32


class GuardedStunProtocol(_StunProtocol):
    """A host or relay socket of a call that hands aioice only datagrams it should see.

    As libwebrtc and pion do: STUN (first byte 0-3, RFC 7983) from anyone, since ICE checks
    and their answers must arrive; anything else (DTLS, SRTP) only from an address that
    completed a STUN check with the ICE password (or the selected pair's). An off-path sender
    spraying the port is dropped here, before it can fill a queue or reach the DTLS stack.
    """

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        raw = cast(bytes, data)
        addr = (addr[0], addr[1])  # an IPv6 four-tuple, as aioice does
        conn = cast("GuardedConnection", self.receiver)
        message = None
        if raw and raw[0] < 4:
            try:
                message = aioice.stun.parse_message(raw)
            except ValueError:
                message = None
        if message is None:
            if conn.gw_accepts(addr, self.local_candidate.component):
                conn.data_received(raw, self.local_candidate.component)
            else:
                conn.gw_dropped += 1
            return
        # aioice's own STUN dispatch (transactions answered, requests to the connection).
        if message.message_class in (aioice.stun.Class.RESPONSE, aioice.stun.Class.ERROR):
            transaction = self.transactions.get(message.transaction_id)
            if transaction is not None:
                transaction.response_received(message, addr)
        elif message.message_class == aioice.stun.Class.REQUEST:
            conn.request_received(message, addr, self)


class GuardedConnection(aioice.Connection):
    """An aioice ``Connection`` whose sockets filter by source (:class:`GuardedStunProtocol`)
    and whose datagram queue is bounded. Installed by :meth:`MediaNetwork.install`
    (``__class__`` switch); its state is the ``gw_*`` attributes set there."""

    gw_validated: set[tuple[str, int]]
    gw_dropped: int

    def gw_accepts(self, addr: tuple[str, int], component: int) -> bool:
        # Any address that proved the ICE password, before and after nomination (as
        # libwebrtc accepts media on any pair whose check succeeded): the two agents can
        # nominate different pairs for a moment, and the peer's DTLS then comes from a
        # validated address that is not our nominated pair's. With 20 calls set up at once
        # that dropped the handshake of some calls until their connect deadline.
        if addr in self.gw_validated:
            return True
        pair = self._nominated.get(component)
        return pair is not None and bool(addr == pair.remote_addr)

    def _gw_validate(self, addr: tuple[str, int]) -> None:
        if len(self.gw_validated) < MAX_VALIDATED_ADDRESSES:
            self.gw_validated.add(addr)

    def check_incoming(self, message: Any, addr: tuple[str, int], protocol: Any) -> None:
        # aioice calls this only for a request that passed MESSAGE-INTEGRITY with our
        # password: its source is the peer.
        self._gw_validate((addr[0], addr[1]))
        super().check_incoming(message, addr, protocol)

    def check_complete(self, pair: Any) -> None:
        if pair.state == aioice.ice.CandidatePair.State.SUCCEEDED:
            self._gw_validate(pair.remote_addr)
        super().check_complete(pair)

    def data_received(self, data: bytes, component: int) -> None:
        if self._queue.qsize() >= MAX_QUEUED_DATAGRAMS:
            self.gw_dropped += 1
            return
        super().data_received(data, component)

    async def get_component_candidates(
            self, component: int, addresses: list[str],
            timeout: int = 5) -> list[Candidate]:  # noqa: ASYNC109
        candidates = list(await super().get_component_candidates(component, addresses,
                                                                 timeout))
        self._gw_guard_protocols()
        return candidates

    def _gw_guard_protocols(self) -> None:
        for p in self._protocols:
            if type(p) is _StunProtocol:
                p.__class__ = GuardedStunProtocol
