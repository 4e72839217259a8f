"""ICE for real networks: a UDP port range, announced (1:1 NAT) addresses, STUN/TURN servers.

aioice (under aiortc) gathers UDP host candidates on every local address, each on an
ephemeral port, plus at most one server-reflexive (STUN) and one relayed (TURN) candidate. It
has no ICE-TCP and no ICE restart. Behind a firewall that opens a few ports, a NAT, or in a
container with a mapped UDP range, that is not enough; this module adds, per process
(:class:`MediaNetwork`, built once from ``[media]``):

- **A port range** (``port_min``/``port_max``, :mod:`.media_ports`): one port per ICE
  component (aiortc bundles and muxes RTCP, so one per call), bound on every host address
  of that call; the port goes back to the *end* of the free list when the peer closes, so a
  just-freed port (with stale packets and conntrack entries) is reused last. When none is
  free, the call is refused (HTTP 503, ``Retry-After``).
- **Announced addresses** (mediasoup's ``announcedIp``, :mod:`.announce`): the answer SDP
  gets, for every private host candidate, one host candidate per announced address *with the
  same port*, at a higher priority; the private one is kept at a lower priority (same-LAN
  clients still pair directly) unless ``announce_private = false``.
- **ICE servers** (:mod:`.ice_servers`): used by the gateway's own peers (aiortc takes the
  first STUN and the first TURN server of the list) and handed to clients with their token
  (``ice_servers`` in ``client_secrets``). TURN credentials are static or coturn REST-API
  short-lived ones, computed from a secret that is read from an environment variable and
  held in a :class:`~gateway.config.Secret`.

**How ports are confined** (the one place aioice internals are touched, like
:func:`gateway.legs.jitter.install_jitter_buffer` for aiortc). aioice binds host sockets in
``Connection.get_component_candidates`` with ``local_addr=(address, 0)`` and offers no option
for a port. aiortc builds its ``Connection`` inside ``RTCIceGatherer.__init__`` (itself built
inside ``RTCPeerConnection``), so there is no factory to hand a subclass to either. The
choices were: patch ``loop.create_datagram_endpoint`` (global, affects every socket of the
process), patch aiortc's module-level ``RTCIceGatherer`` name (global, affects client peers
in tests too), or give *this peer's* ``Connection`` objects a subclass once
``setRemoteDescription`` has created them and before ``setLocalDescription`` gathers. The last
is per peer and smallest: :meth:`MediaNetwork.install` switches each gatherer's connection to
:class:`RangeBoundConnection` (an attribute-free subclass, so the object and every reference
aiortc holds to it stay valid), which binds the host part itself inside the range and leaves
STUN and TURN to aioice's own functions. It checks what it relies on and raises
``RuntimeError`` if aioice changes shape, rather than silently binding ephemeral ports.

The TURN client socket (the allocation's flow to the TURN server) is an outgoing flow from an
ephemeral port, as any client connection is; a stateful firewall lets its replies back in.
It is not confined: aioice creates it inside ``turn.create_turn_endpoint``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from collections.abc import Mapping, Sequence
from typing import Any, cast

import aioice
import aioice.ice
import aioice.turn
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aiortc import RTCConfiguration, RTCPeerConnection

from ..config import MediaConfig
from .announce import parse_announced, rewrite_answer_sdp
from .ice_filter import GuardedConnection, GuardedStunProtocol
from .ice_servers import IceServer, parse_ice_servers
from .media_ports import PortAllocator, PortRangeExhausted

log = logging.getLogger("gateway.ice")

#: Candidate types the metrics label may take (aioice's, and nothing else).
CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay"})

# What RangeBoundConnection relies on; a missing piece fails at import, loudly.
_server_reflexive_candidate = aioice.ice.server_reflexive_candidate
_TURN_RCVBUF = aioice.turn.UDP_SOCKET_BUFFER_SIZE


# -- confining host sockets --------------------------------------------------------------


class RangeBoundConnection(GuardedConnection):
    """An aioice ``Connection`` whose host candidates are bound inside the port range.

    Installed on an existing connection by :meth:`MediaNetwork.install` (``__class__``
    switch); adds no attributes of its own except ``_gw_ports``/``_gw_held``.
    """

    _gw_ports: PortAllocator
    _gw_held: list[int]

    # aioice's signature, timeout included
    async def get_component_candidates(
            self, component: int, addresses: list[str],
            timeout: int = 5) -> list[Candidate]:  # noqa: ASYNC109
        if not addresses:  # relay-only policy: no host sockets, only aioice's TURN part
            return list(await super().get_component_candidates(component, [], timeout))
        protocols = await self._bind_host(component, addresses)
        candidates = [p.local_candidate for p in protocols]
        self._protocols += protocols
        # TURN (aioice's own code: with no addresses it binds no host socket), and STUN for
        # each of our IPv4 host sockets (aioice's own query), in parallel, as aioice does.
        relay = asyncio.ensure_future(super().get_component_candidates(component, [], timeout))
        reflexive = [asyncio.ensure_future(_server_reflexive_candidate(p, self.stun_server))
                     for p in protocols if self.stun_server
                     and ipaddress.ip_address(p.local_candidate.host).version == 4]
        try:
            if reflexive:
                done, _ = await asyncio.wait(reflexive, timeout=timeout)
                candidates += [t.result()[0] for t in done if t.exception() is None]
            candidates += await relay
        finally:
            for t in (relay, *reflexive):
                t.cancel()
        self._gw_guard_protocols()
        return candidates

    async def _bind_host(self, component: int, addresses: list[str]) -> list[Any]:
        """One port of the range, bound on every host address; another port if a foreign
        socket holds it; :class:`PortRangeExhausted` when none is left."""
        busy: list[int] = []
        try:
            while True:
                port = self._gw_ports.take()  # raises PortRangeExhausted
                self._gw_held.append(port)  # from now on close() gives it back
                protocols = await self._bind_port(component, addresses, port)
                if protocols is not None:
                    if self._closing:  # closed while binding: do not leak the sockets
                        for p in protocols:
                            p.transport.close()
                        self._gw_release()
                        return []
                    return protocols
                self._gw_held.remove(port)
                busy.append(port)
        finally:
            for port in busy:  # back at the end of the free list: tried last next time
                self._gw_ports.release(port)

    async def _bind_port(self, component: int, addresses: list[str],
                         port: int) -> list[Any] | None:
        """Sockets on ``port`` for every address (None if another socket holds it)."""
        loop = asyncio.get_running_loop()
        protocols: list[Any] = []
        try:
            for address in addresses:
                try:
                    transport, protocol = await loop.create_datagram_endpoint(
                        lambda: GuardedStunProtocol(self), local_addr=(address, port))
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        raise
                    log.info("could not bind %s:%d: %s", address, port, exc)  # as aioice
                    continue
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _TURN_RCVBUF)
                host, bound = transport.get_extra_info("sockname")[:2]
                protocol.local_candidate = Candidate(
                    foundation=candidate_foundation("host", "udp", host),
                    component=component, transport="udp",
                    priority=candidate_priority(component, "host"),
                    host=host, port=bound, type="host")
                protocols.append(protocol)
            return protocols
        except BaseException as exc:
            for p in protocols:
                p.transport.close()
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                log.info("media port %d is held by another socket: trying another", port)
                return None
            raise

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._gw_release()

    def _gw_release(self) -> None:
        held, self._gw_held = self._gw_held, []
        for port in held:
            self._gw_ports.release(port)


def _connections(pc: RTCPeerConnection) -> list[Any]:
    """The aioice connections of a peer, through aiortc's public transport attributes."""
    found: dict[int, Any] = {}
    dtls = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        dtls.append(pc.sctp.transport)
    for d in dtls:
        conn = getattr(d.transport.iceGatherer, "_connection", None)
        if conn is None:
            raise RuntimeError("aiortc's RTCIceGatherer has no _connection to confine")
        found[id(conn)] = conn
    return list(found.values())


def selected_pair(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """(local type, remote type) of the nominated pair of the peer's first transport.

    Called from aiortc's state-change event: it logs instead of raising (an exception there
    would surface inside aiortc), and returns None if aioice no longer looks as expected.
    """
    try:
        conns = _connections(pc)
    except RuntimeError:
        log.exception("cannot read the selected ICE pair")
        return None
    for conn in conns:
        nominated = getattr(conn, "_nominated", None)
        if not isinstance(nominated, dict):
            log.error("aioice's Connection has no _nominated pairs: pair type not reported")
            return None
        pair = nominated.get(1)
        if pair is not None:
            local, remote = pair.local_candidate.type, pair.remote_candidate.type
            return (local if local in CANDIDATE_TYPES else "other",
                    remote if remote in CANDIDATE_TYPES else "other")
    return None


# -- the per-process policy ---------------------------------------------------------------


class MediaNetwork:
    """The ``[media]`` network settings of one process, applied to each gateway peer."""

    def __init__(self, *, ports: PortAllocator | None = None,
                 announced: Sequence[str] = (), servers: Sequence[IceServer] = (),
                 keep_private: bool = True) -> None:
        self.ports = ports
        self.announced = tuple(announced)
        self.servers = tuple(servers)
        self.keep_private = keep_private
        turn = [s for s in self.servers if s.for_gateway and s.is_turn]
        if len(turn) > 1:
            log.warning("aiortc uses one TURN server: the gateway's peers use %s only "
                        "(clients get all)", turn[0].urls[0])

    @classmethod
    def from_config(cls, media: MediaConfig,
                    env: Mapping[str, str] | None = None) -> MediaNetwork:
        lo, hi = media.port_min, media.port_max
        if (lo, hi) != (0, 0) and (lo <= 0 or hi <= 0):
            raise ValueError("media.port_min/port_max: set both, or both to 0 (any port)")
        return cls(ports=PortAllocator(lo, hi) if lo else None,
                   announced=parse_announced(media.announced_addresses),
                   servers=parse_ice_servers(media.ice_servers, env),
                   keep_private=media.announce_private)

    def rtc_configuration(self, now: float | None = None) -> RTCConfiguration:
        """For a gateway peer: never aiortc's default (Google's STUN server)."""
        return RTCConfiguration(iceServers=[s.for_aiortc(now) for s in self.servers
                                            if s.for_gateway])

    def client_ice_servers(self, user: str, now: float | None = None) -> list[dict[str, Any]]:
        """The ``ice_servers`` extension field of token responses (W3C ``RTCIceServer``s)."""
        return [s.for_client(user, now) for s in self.servers if s.for_clients]

    def check_capacity(self) -> None:
        """Refuse a call up front when no media port is free (a race still fails in gather)."""
        if self.ports is not None and self.ports.free == 0:
            raise PortRangeExhausted()

    def install(self, pc: RTCPeerConnection) -> None:
        """Filter the sockets of ``pc`` by source and bound its queue, and confine them to
        the port range when there is one (call before it gathers)."""
        for conn in _connections(pc):
            if isinstance(conn, GuardedConnection):
                continue
            if type(conn) is not aioice.Connection:
                raise RuntimeError(f"unexpected ICE connection type {type(conn)!r}")
            for attr in ("_protocols", "_closing", "_local_candidates_start", "stun_server"):
                if not hasattr(conn, attr):
                    raise RuntimeError(f"aioice's Connection has no {attr}: cannot confine "
                                       "media ports")
            for attr in ("_nominated", "_queue"):
                if not hasattr(conn, attr):
                    raise RuntimeError(f"aioice's Connection has no {attr}: cannot filter "
                                       "media sources")
            if conn._local_candidates_start:
                raise RuntimeError("ICE gathering already started: too late to confine ports")
            guarded = cast(GuardedConnection, conn)
            guarded.gw_validated = set()
            guarded.gw_dropped = 0
            if self.ports is None:
                conn.__class__ = GuardedConnection
                continue
            conn.__class__ = RangeBoundConnection
            bound = cast(RangeBoundConnection, conn)
            bound._gw_ports = self.ports
            bound._gw_held = []

    def finish_answer(self, sdp: str) -> str:
        return rewrite_answer_sdp(sdp, self.announced, keep_private=self.keep_private)
