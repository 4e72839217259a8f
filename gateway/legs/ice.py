"""ICE for real networks: a UDP port range, announced (1:1 NAT) addresses, STUN/TURN servers.

aioice (under aiortc) gathers UDP host candidates on every local address, each on an
ephemeral port, plus at most one server-reflexive (STUN) and one relayed (TURN) candidate. It
has no ICE-TCP and no ICE restart. Behind a firewall that opens a few ports, a NAT, or in a
container with a mapped UDP range, that is not enough; this module adds, per process
(:class:`MediaNetwork`, built once from ``[media]``):

- **A port range** (``port_min``/``port_max``). :class:`PortAllocator` hands out one port per
  ICE component (aiortc bundles and muxes RTCP, so one per call), bound on every host address
  of that call; the port goes back to the *end* of the free list when the peer closes, so a
  just-freed port (with stale packets and conntrack entries) is reused last. When none is
  free, the call is refused with :class:`PortRangeExhausted` (HTTP 503, ``Retry-After``).
- **Announced addresses** (mediasoup's ``announcedIp``): the answer SDP gets, for every
  private host candidate, one host candidate per announced address *with the same port*, at
  a higher priority; the private one is kept at a lower priority (same-LAN clients still pair
  directly) unless ``announce_private = false``. See :func:`rewrite_answer_sdp`.
- **ICE servers**: used by the gateway's own peers (aiortc takes the first STUN and the first
  TURN server of the list) and handed to clients with their token (``ice_servers`` in
  ``client_secrets``). TURN credentials are static or coturn REST-API short-lived ones
  (:func:`turn_rest_credentials`), computed from a secret that is read from an environment
  variable and held in a :class:`~gateway.config.Secret`.

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
import base64
import errno
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import aioice
import aioice.ice
import aioice.turn
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcicetransport import parse_stun_turn_uri

from ..config import MediaConfig, Secret
from ..errors import ApiError
from .ice_filter import GuardedConnection, GuardedStunProtocol

log = logging.getLogger("gateway.ice")

PORTS_EXHAUSTED = "media_ports_exhausted"
RETRY_AFTER_S = 2
#: Candidate types the metrics label may take (aioice's, and nothing else).
CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay"})
DEFAULT_TURN_TTL_S = 86_400
#: Local preference of a kept private host candidate: below every announced one.
PRIVATE_LOCAL_PREF = 32_767

# What RangeBoundConnection relies on; a missing piece fails at import, loudly.
_server_reflexive_candidate = aioice.ice.server_reflexive_candidate
_TURN_RCVBUF = aioice.turn.UDP_SOCKET_BUFFER_SIZE


class PortRangeExhausted(ApiError):
    """Every port of the media range is in use: new calls are refused, none is harmed."""

    def __init__(self) -> None:
        super().__init__(503, PORTS_EXHAUSTED, "The gateway has no free media port for a new "
                         "call; retry shortly.", type_="server_error",
                         headers={"Retry-After": str(RETRY_AFTER_S)})


class PortAllocator:
    """The free ports of ``[port_min, port_max]``; least recently released first."""

    def __init__(self, port_min: int, port_max: int) -> None:
        if not (1 <= port_min <= port_max <= 65535):
            raise ValueError(f"media.port_min/port_max: need 1 <= min <= max <= 65535, got "
                             f"{port_min}..{port_max}")
        self.port_min = port_min
        self.port_max = port_max
        self._free: deque[int] = deque(range(port_min, port_max + 1))
        self._used: set[int] = set()

    @property
    def size(self) -> int:
        return self.port_max - self.port_min + 1

    @property
    def free(self) -> int:
        return len(self._free)

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._used)

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.port_min <= port <= self.port_max

    def take(self) -> int:
        if not self._free:
            raise PortRangeExhausted()
        port = self._free.popleft()
        self._used.add(port)
        return port

    def release(self, port: int) -> None:
        if port in self._used:
            self._used.discard(port)
            self._free.append(port)


def turn_rest_credentials(secret: str, user: str, ttl_s: int,
                          now: float | None = None) -> tuple[str, str]:
    """coturn's REST API (``use-auth-secret``): ``("<expiry unix>:<user>", base64(HMAC-SHA1))``."""
    expiry = int(time.time() if now is None else now) + int(ttl_s)
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, slots=True)
class IceServer:
    """One ``[[media.ice_servers]]`` table. Credentials never appear in its repr."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: Secret | None = None
    #: coturn REST-API shared secret (from the environment variable ``turn_secret_env``).
    turn_secret: Secret | None = None
    turn_ttl_s: int = DEFAULT_TURN_TTL_S
    #: The user part of REST-API usernames for the gateway's own peers.
    turn_user: str = "gateway"
    for_gateway: bool = True
    for_clients: bool = True

    @property
    def is_turn(self) -> bool:
        return any(u.startswith(("turn:", "turns:")) for u in self.urls)

    def credentials(self, user: str | None = None,
                    now: float | None = None) -> tuple[str | None, str | None]:
        if self.turn_secret is not None:
            return turn_rest_credentials(self.turn_secret.reveal(), user or self.turn_user,
                                         self.turn_ttl_s, now)
        return self.username, self.credential.reveal() if self.credential else None

    def for_client(self, user: str | None = None, now: float | None = None) -> dict[str, Any]:
        """The W3C ``RTCIceServer`` dictionary a browser passes to ``RTCPeerConnection``."""
        out: dict[str, Any] = {"urls": list(self.urls)}
        username, credential = self.credentials(user, now)
        if username is not None:
            out["username"] = username
        if credential is not None:
            out["credential"] = credential
        return out

    def for_aiortc(self, now: float | None = None) -> RTCIceServer:
        username, credential = self.credentials(None, now)
        return RTCIceServer(urls=list(self.urls), username=username, credential=credential)


_ICE_KEYS = frozenset({"urls", "username", "credential", "credential_env", "turn_secret_env",
                       "turn_ttl_s", "turn_user", "for_gateway", "for_clients"})


def parse_ice_servers(raw: Any, env: Mapping[str, str] | None = None) -> tuple[IceServer, ...]:
    """``media.ice_servers`` (TOML tables, or JSON text from ``GATEWAY_MEDIA_ICE_SERVERS``)."""
    env = os.environ if env is None else env
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except ValueError as e:
            raise ValueError("media.ice_servers: not valid JSON") from e
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, Sequence):
        raise ValueError("media.ice_servers: expected a list of tables")
    servers = []
    for i, item in enumerate(raw):
        where = f"media.ice_servers[{i}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where}: expected a table with 'urls'")
        unknown = set(item) - _ICE_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
        urls = item.get("urls")
        urls = [urls] if isinstance(urls, str) else urls
        if not urls or not all(isinstance(u, str) and u.startswith(("stun:", "stuns:", "turn:",
                                                                    "turns:")) for u in urls):
            raise ValueError(f"{where}.urls: expected stun:/turn:/turns: URLs")
        for u in urls:  # as aiortc will parse them for every call: fail now, not per call
            try:
                parse_stun_turn_uri(u)
            except ValueError as e:
                raise ValueError(f"{where}.urls: {u!r}: {e}") from e
        secret = None
        if item.get("turn_secret_env"):
            var = str(item["turn_secret_env"])
            if not env.get(var):
                raise ValueError(f"{where}.turn_secret_env: the environment variable {var} "
                                 "is unset or empty")
            secret = Secret(env[var])
        credential = None
        if item.get("credential_env"):
            var = str(item["credential_env"])
            if not env.get(var):
                raise ValueError(f"{where}.credential_env: the environment variable {var} "
                                 "is unset or empty")
            credential = Secret(env[var])
        elif item.get("credential") is not None:
            credential = Secret(str(item["credential"]))
        username = item.get("username")
        server = IceServer(
            urls=tuple(urls), username=None if username is None else str(username),
            credential=credential, turn_secret=secret,
            turn_ttl_s=int(item.get("turn_ttl_s", DEFAULT_TURN_TTL_S)),
            turn_user=str(item.get("turn_user", "gateway")),
            for_gateway=bool(item.get("for_gateway", True)),
            for_clients=bool(item.get("for_clients", True)))
        if server.is_turn and secret is None and (username is None or credential is None):
            raise ValueError(f"{where}: a TURN server needs username + credential "
                             "(or credential_env), or turn_secret_env")
        if server.turn_ttl_s <= 0:
            raise ValueError(f"{where}.turn_ttl_s must be positive")
        servers.append(server)
    return tuple(servers)


def parse_announced(addresses: Iterable[str]) -> tuple[str, ...]:
    out = []
    for a in addresses:
        try:
            ip = ipaddress.ip_address(a.strip())
        except ValueError as e:
            raise ValueError(f"media.announced_addresses: {a!r} is not an IP address") from e
        out.append(str(ip))
    return tuple(out)


# -- SDP --------------------------------------------------------------------------------


def _priority(component: int, local_pref: int) -> int:
    return int(candidate_priority(component, "host", local_pref))


def _foundation(address: str) -> str:
    return hashlib.sha1(f"announced|udp|{address}".encode()).hexdigest()[:16]


def _family(address: str) -> int | None:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:  # an mDNS name or garbage: never rewritten
        return None


def rewrite_answer_sdp(sdp: str, announced: Sequence[str], *, keep_private: bool = True) -> str:
    """Add, for each private UDP host candidate, one host candidate per announced address of
    the same family on the same port, ahead of and above it; keep the private one at a lower
    priority (or drop it); point ``c=`` lines at the first announced address.

    Only host candidates are touched: srflx/relay candidates already carry public addresses.
    """
    if not announced:
        return sdp
    eol = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(eol)
    trailer = lines.pop() if lines and lines[-1] == "" else None
    out: list[str] = []
    section: list[str] = []

    def flush() -> None:
        out.extend(_rewrite_section(section, announced, keep_private))
        section.clear()

    for line in lines:
        if line.startswith("m="):
            flush()
        section.append(line)
    flush()
    if trailer is not None:
        out.append(trailer)
    return eol.join(out)


def _rewrite_section(lines: list[str], announced: Sequence[str],
                     keep_private: bool) -> list[str]:
    added: list[str] = []
    seen: set[tuple[str, int, int]] = set()
    private: dict[str, str] = {}  # private address -> its first announced twin
    rewritten: list[str | None] = []
    for line in lines:
        if not line.startswith("a=candidate:"):
            rewritten.append(line)
            continue
        parts = line[len("a=candidate:"):].split()
        # foundation component transport priority address port "typ" type ...
        if (len(parts) < 8 or parts[2].lower() != "udp" or parts[6] != "typ"
                or parts[7] != "host" or _family(parts[4]) is None):
            rewritten.append(line)
            continue
        component, address, port = int(parts[1]), parts[4], int(parts[5])
        family = _family(address)
        twins = [a for a in announced if _family(a) == family and a != address]
        if not twins:
            rewritten.append(line)
            continue
        for i, pub in enumerate(twins):
            if (pub, port, component) in seen:
                continue
            seen.add((pub, port, component))
            added.append(f"a=candidate:{_foundation(pub)} {component} udp "
                         f"{_priority(component, 65535 - i)} {pub} {port} typ host")
        private.setdefault(address, twins[0])
        if keep_private:
            parts[3] = str(_priority(component, PRIVATE_LOCAL_PREF))
            rewritten.append("a=candidate:" + " ".join(parts))
        else:
            rewritten.append(None)
    if not added:
        return lines
    result: list[str] = []
    inserted = False
    for kept in rewritten:
        if kept is None:
            continue
        if not inserted and kept.startswith("a=candidate:"):
            result.extend(added)
            inserted = True
        if kept.startswith("c=IN IP"):
            kind, _, addr = kept.partition(" IP")[2].partition(" ")
            if addr in private:
                kept = f"c=IN IP{kind} {private[addr]}"
        result.append(kept)
    if not inserted:  # every candidate was private and dropped
        at = next((i for i, x in enumerate(result) if x == "a=end-of-candidates"), len(result))
        result[at:at] = added
    return result


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

