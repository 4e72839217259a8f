"""ICE settings: TURN REST credentials, ICE server parsing, answer SDP rewriting, the port
range (in-process calls with real aiortc peers on this machine's own addresses).

The NAT, firewall and TURN behaviour end to end is in tests/test_netns.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from aioice import stun
from aioice.ice import get_host_addresses
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.sdp import SessionDescription

from gateway.api.appkeys import CALLS, FACTORY, METRICS
from gateway.config import MediaConfig
from gateway.legs.announce import rewrite_answer_sdp
from gateway.legs.ice import MediaNetwork, _connections
from gateway.legs.ice_servers import parse_ice_servers, turn_rest_credentials
from gateway.legs.media_ports import PortAllocator, PortRangeExhausted
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import API_KEY, Gateway, running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, tone
from tests.waiting import until

# -- TURN REST credentials ---------------------------------------------------------------


def test_turn_rest_credentials_known_vector() -> None:
    # Computed independently: echo -n "1700003600:alice" |
    #   openssl dgst -sha1 -hmac north-wind -binary | base64
    user, password = turn_rest_credentials("north-wind", "alice", 3600, now=1_700_000_000.7)
    assert user == "1700003600:alice"
    assert password == "iRtTIZ3N38dm9S+dP+UkHfnN9Qo="
    mac = hmac.new(b"north-wind", b"1700003600:alice", hashlib.sha1).digest()
    assert password == base64.b64encode(mac).decode()


def test_ice_servers_from_tables_secret_from_env_only() -> None:
    env = {"TURN_SECRET": "s3cr3t-from-env", "STATIC_CRED": "static-from-env"}
    servers = parse_ice_servers([
        {"urls": "stun:stun.example.test:3478"},
        {"urls": ["turn:turn.example.test:3478?transport=udp",
                  "turns:turn.example.test:5349?transport=tcp"],
         "turn_secret_env": "TURN_SECRET", "turn_ttl_s": 600},
        {"urls": ["turn:other.example.test"], "username": "u", "credential_env": "STATIC_CRED",
         "for_gateway": False},
    ], env)
    stun, rest, static = servers
    assert stun.for_client() == {"urls": ["stun:stun.example.test:3478"]}
    got = rest.for_client("sess_abc", now=1_000)
    assert got["urls"] == ["turn:turn.example.test:3478?transport=udp",
                           "turns:turn.example.test:5349?transport=tcp"]
    assert got["username"] == "1600:sess_abc"
    assert got["credential"] == turn_rest_credentials("s3cr3t-from-env", "sess_abc", 600,
                                                      now=1_000)[1]
    assert static.for_client() == {"urls": ["turn:other.example.test"], "username": "u",
                                   "credential": "static-from-env"}
    # Never in a repr (logs, tracebacks).
    for s in servers:
        assert "s3cr3t" not in repr(s) and "static-from-env" not in repr(s)
    # The gateway's own peers: REST username with the gateway's user; not for_gateway=False.
    net = MediaNetwork(servers=servers)
    rtc = net.rtc_configuration(now=1_000)
    assert [s.urls for s in rtc.iceServers] == [[stun.urls[0]], list(rest.urls)]
    assert rtc.iceServers[1].username == "1600:gateway"
    assert [s["urls"][0] for s in net.client_ice_servers("sess_x")] == [
        stun.urls[0], rest.urls[0], static.urls[0]]
    # The same as JSON text, as GATEWAY_MEDIA_ICE_SERVERS would carry it.
    assert parse_ice_servers('[{"urls": "stun:a.test"}]', {})[0].urls == ("stun:a.test",)


@pytest.mark.parametrize("table,error", [
    ({"urls": "turn:t.test", "turn_secret_env": "NOPE"}, "NOPE is unset"),
    ({"urls": "turn:t.test"}, "needs username"),
    ({"urls": "http://t.test"}, "stun:/turn:/turns:"),
    ({"urls": "turn:t.test:34x78"}, "malformed"),
    ({"urls": "stun:t.test", "password": "x"}, "unknown key"),
    ({"urls": "turn:t.test", "turn_secret_env": "S", "turn_ttl_s": 0}, "positive"),
])
def test_bad_ice_server_tables_fail_at_startup(table: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_ice_servers([table], {"S": "x"})


def test_media_network_from_config() -> None:
    assert MediaNetwork.from_config(MediaConfig()).rtc_configuration().iceServers == []
    net = MediaNetwork.from_config(MediaConfig(port_min=41000, port_max=41001,
                                               announced_addresses=(" 203.0.113.5",)))
    assert net.ports is not None and net.ports.size == 2
    assert net.announced == ("203.0.113.5",)
    with pytest.raises(ValueError, match="set both"):
        MediaNetwork.from_config(MediaConfig(port_min=41000))
    with pytest.raises(ValueError, match="min <= max"):
        MediaNetwork.from_config(MediaConfig(port_min=41001, port_max=41000))
    with pytest.raises(ValueError, match="not an IP address"):
        MediaNetwork.from_config(MediaConfig(announced_addresses=("gw.example.test",)))


# -- answer SDP ---------------------------------------------------------------------------

ANSWER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 40000 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 10.0.0.5", "a=sendrecv", "a=mid:0",
    "a=rtcp:9 IN IP4 0.0.0.0", "a=rtcp-mux", "a=rtpmap:96 opus/48000/2",
    "a=candidate:aaa 1 udp 2130706431 10.0.0.5 40000 typ host",
    "a=candidate:bbb 1 udp 2130706431 fd00::5 40000 typ host",
    "a=candidate:ccc 1 udp 1694498815 198.51.100.9 61000 typ srflx raddr 10.0.0.5 rport 40000",
    "a=candidate:ddd 1 udp 16777215 192.0.2.77 50000 typ relay raddr 10.0.0.5 rport 51000",
    "a=end-of-candidates", "a=ice-ufrag:abcd", "a=ice-pwd:0123456789012345678901",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:active",
    "m=application 40000 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 10.0.0.5", "a=mid:1",
    "a=sctp-port:5000", "a=candidate:aaa 1 udp 2130706431 10.0.0.5 40000 typ host",
    "a=end-of-candidates", "a=ice-ufrag:abcd", "a=ice-pwd:0123456789012345678901",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:active", ""])


def candidates(sdp: str) -> list[list[tuple[str, int, str, int]]]:
    """Per media section: (address, port, type, priority), parsed by aiortc itself."""
    desc = SessionDescription.parse(sdp)
    return [[(c.ip, c.port, c.type, c.priority) for c in m.ice_candidates] for m in desc.media]


def test_announced_address_added_on_the_same_port_above_the_private_one() -> None:
    out = rewrite_answer_sdp(ANSWER, ["203.0.113.5"])
    assert out.endswith("\r\n") and "\n" not in out.replace("\r\n", "")
    audio, app = candidates(out)
    pub = [c for c in audio if c[0] == "203.0.113.5"]
    priv = [c for c in audio if c[0] == "10.0.0.5"]
    assert len(pub) == 1 and pub[0][1:3] == (40000, "host")
    assert len(priv) == 1 and priv[0][3] < pub[0][3]
    assert audio[0][0] == "203.0.113.5"  # listed first
    # Not touched: IPv6 host (no IPv6 announced), srflx, relay.
    assert ("fd00::5", 40000, "host", 2130706431) in audio
    assert ("198.51.100.9", 61000, "srflx", 1694498815) in audio
    assert ("192.0.2.77", 50000, "relay", 16777215) in audio
    # Every candidate still above srflx and relay, the private one included.
    assert priv[0][3] > 1694498815
    assert [c[0] for c in app] == ["203.0.113.5", "10.0.0.5"]
    assert "c=IN IP4 203.0.113.5" in out and "c=IN IP4 10.0.0.5" not in out
    assert SessionDescription.parse(out).media[0].ice.usernameFragment == "abcd"


def test_announced_without_private_and_several_addresses() -> None:
    out = rewrite_answer_sdp(ANSWER, ["203.0.113.5", "203.0.113.6", "2001:db8::1"],
                             keep_private=False)
    audio, app = candidates(out)
    hosts = [c for c in audio if c[2] == "host"]
    assert [c[0] for c in hosts] == ["203.0.113.5", "203.0.113.6", "2001:db8::1"]
    assert hosts[0][3] > hosts[1][3]  # the first announced address is preferred
    assert all(c[1] == 40000 for c in hosts)
    assert "10.0.0.5 40000 typ host" not in out and "fd00::5" not in out
    foundations = [line.split()[0] for line in out.split("\r\n")
                   if line.startswith("a=candidate:") and "typ host" in line]
    assert len(set(foundations[:3])) == 3
    assert [c[0] for c in app] == ["203.0.113.5", "203.0.113.6"]


def test_no_announced_address_leaves_the_answer_alone() -> None:
    assert rewrite_answer_sdp(ANSWER, []) == ANSWER
    # A host already on its public address is not doubled.
    already = ANSWER.replace("10.0.0.5", "203.0.113.5")
    assert candidates(rewrite_answer_sdp(already, ["203.0.113.5"])) == candidates(already)


# -- the port allocator -----------------------------------------------------------------


def test_port_allocator_reuses_released_ports_last_and_refuses_when_empty() -> None:
    ports = PortAllocator(50000, 50002)
    assert [ports.take(), ports.take()] == [50000, 50001]
    ports.release(50000)
    assert ports.take() == 50002 and ports.take() == 50000
    with pytest.raises(PortRangeExhausted) as e:
        ports.take()
    err = e.value
    assert err.status == 503 and err.headers == {"Retry-After": "2"}
    assert err.body()["error"]["code"] == "media_ports_exhausted"
    assert err.body()["error"]["type"] == "server_error"
    ports.release(40000)  # not ours: ignored
    assert ports.free == 0 and 40000 not in ports
    for bad in ((0, 10), (10, 9), (1, 70000)):
        with pytest.raises(ValueError):
            PortAllocator(*bad)


async def test_install_refuses_a_peer_that_already_gathered() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        with pytest.raises(RuntimeError, match="too late"):
            MediaNetwork(ports=PortAllocator(50000, 50001)).install(pc)
    finally:
        await pc.close()


# -- calls through an in-process gateway ---------------------------------------------------


def free_port_block(n: int) -> int:
    """A first port such that the n ports from it look free right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("0.0.0.0", 0))
            base = int(s.getsockname()[1])
        if base + n > 65535:
            continue
        try:
            probes = []
            for p in range(base, base + n):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind(("0.0.0.0", p))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return base
    raise RuntimeError("no block of free UDP ports")


def process_udp_ports() -> set[int]:
    """Local ports of every UDP socket this process holds, from /proc (the kernel's view)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def media_toml(port_min: int, port_max: int, extra: str = "") -> str:
    return f"[media]\nport_min = {port_min}\nport_max = {port_max}\n{extra}"


def local_ports(pc: RTCPeerConnection) -> set[int]:
    return {c.port for conn in _connections(pc) for c in conn.local_candidates}


async def connect(gw: Gateway) -> ClientPeer:
    peer = ClientPeer(PcmSourceTrack(tone(440.0, -20.0)))
    try:
        await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
    except BaseException:
        await peer.close()
        raise
    return peer


async def test_every_media_socket_is_bound_inside_the_range() -> None:
    base = free_port_block(4)
    async with running_fake() as (_, url), running_gateway(url, toml=media_toml(
            base, base + 3, 'announced_addresses = ["203.0.113.5"]\n')) as gw:
        before = process_udp_ports()
        peers = [await connect(gw), await connect(gw)]
        try:
            await until(lambda: len(gw.app[CALLS]) == 2, 5, "two calls")
            gateway_ports: set[int] = set()
            for call in gw.app[CALLS]:
                ports = local_ports(call.leg.pc)  # type: ignore[attr-defined]
                assert len(ports) == 1  # one port per call, on every host address
                gateway_ports |= ports
            assert gateway_ports <= set(range(base, base + 4))
            assert len(gateway_ports) == 2
            # The kernel's view: every UDP socket opened since, except the client peers'.
            client_ports = set().union(*(local_ports(p.pc) for p in peers))
            opened = process_udp_ports() - before - client_ports
            assert opened and all(base <= p <= base + 3 for p in opened), opened
            network = gw.app[FACTORY].ice
            assert network.ports is not None and network.ports.free == 2
            # Connected on this machine's own addresses: host <-> host, counted and noted.
            counter = gw.app[METRICS].webrtc_candidate_pairs
            await until(lambda: counter.labels("host", "host")._value.get() == 2, 5,
                        "pairs counted")
        finally:
            for p in peers:
                await p.close()
        await until(lambda: not gw.app[CALLS], 10, "calls ended")
        assert network.ports.free == 4  # every port back in the range


async def test_one_port_range_second_call_gets_503_and_the_port_comes_back() -> None:
    port = free_port_block(1)
    async with running_fake() as (_, url), running_gateway(url, toml=media_toml(
            port, port)) as gw:
        first = await connect(gw)
        try:
            async with gw.http.post(f"{gw.base}/v1/realtime/calls", data=await ClientPeer(
                    None).offer(), headers={"Authorization": f"Bearer {await gw.mint()}",
                                            "Content-Type": "application/sdp"}) as r:
                body = await r.json()
                assert r.status == 503
                assert r.headers["Retry-After"] == "2"
            assert body == {"error": {"type": "server_error", "code": "media_ports_exhausted",
                                      "message": body["error"]["message"], "param": None}}
            failures = gw.app[METRICS].call_setup_failures
            assert failures.labels("webrtc", "media_ports_exhausted")._value.get() == 1
            assert len(gw.app[CALLS]) == 1  # the first call is unharmed
        finally:
            await first.close()
        await until(lambda: not gw.app[CALLS], 10, "first call ended")
        third = await connect(gw)
        await third.close()


async def test_a_port_taken_by_another_process_is_skipped_or_refused() -> None:
    base = free_port_block(2)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("0.0.0.0", base))
    try:
        async with running_fake() as (_, url), running_gateway(url, toml=media_toml(
                base, base + 1)) as gw:
            peer = await connect(gw)  # base is busy: the call gets base + 1
            try:
                (call,) = list(gw.app[CALLS])
                assert local_ports(call.leg.pc) == {base + 1}  # type: ignore[attr-defined]
                # Now nothing is bindable: the free-port check passes (base looks free to
                # the allocator) and the bind fails during gathering: still a clean 503.
                other = ClientPeer(None)
                try:
                    async with gw.http.post(
                            f"{gw.base}/v1/realtime/calls", data=await other.offer(),
                            headers={"Authorization": f"Bearer {await gw.mint()}",
                                     "Content-Type": "application/sdp"}) as r:
                        assert r.status == 503, await r.text()
                        assert (await r.json())["error"]["code"] == "media_ports_exhausted"
                finally:
                    await other.close()
                network = gw.app[FACTORY].ice
                assert network.ports is not None and network.ports.free == 1
            finally:
                await peer.close()
            await until(lambda: not gw.app[CALLS], 10, "call ended")
    finally:
        squatter.close()


async def test_token_responses_carry_ice_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_TURN_SECRET", "rest-secret")
    toml = ('[server]\ndemo_enabled = true\n[media]\n[[media.ice_servers]]\n'
            'urls = ["turn:turn.example.test:3478"]\nturn_secret_env = "GW_TEST_TURN_SECRET"\n'
            'turn_ttl_s = 300\n')
    async with running_fake() as (_, url), running_gateway(url, toml=toml) as gw:
        async with gw.http.post(f"{gw.base}/v1/realtime/client_secrets", json={},
                                headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            data = await r.json()
        (server,) = data["ice_servers"]
        assert server["urls"] == ["turn:turn.example.test:3478"]
        assert server["username"].endswith(":" + data["session"]["id"])
        mac = hmac.new(b"rest-secret", server["username"].encode(), hashlib.sha1).digest()
        assert server["credential"] == base64.b64encode(mac).decode()
        async with gw.http.post(f"{gw.base}/api/session", json={}) as r:
            demo = await r.json()
        assert demo["ice_servers"][0]["username"].endswith(":demo")
        assert "rest-secret" not in repr(gw.app[FACTORY].ice.servers)
    # Without ICE servers the response is exactly OpenAI's shape.
    async with running_fake() as (_, url), running_gateway(url) as gw:
        async with gw.http.post(f"{gw.base}/v1/realtime/client_secrets", json={},
                                headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            assert set(await r.json()) == {"value", "expires_at", "session"}


class _StunResponder:
    """A minimal STUN server (binding requests only), to show srflx gathering in the range."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.requests = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = stun.parse_message(data)
        self.requests += 1
        response = stun.Message(message_method=stun.Method.BINDING,
                                message_class=stun.Class.RESPONSE,
                                transaction_id=request.transaction_id)
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        self.transport.sendto(bytes(response), addr)

    def error_received(self, exc: Exception) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        pass


async def test_stun_reflexive_candidates_come_from_sockets_in_the_range() -> None:
    address = get_host_addresses(use_ipv4=True, use_ipv6=False)[0]
    transport, stun_server = await asyncio.get_running_loop().create_datagram_endpoint(
        _StunResponder, local_addr=(address, 0))
    stun_port = transport.get_extra_info("sockname")[1]
    base = free_port_block(2)
    try:
        network = MediaNetwork(ports=PortAllocator(base, base + 1), servers=parse_ice_servers(
            [{"urls": f"stun:{address}:{stun_port}"}], {}))
        pc = RTCPeerConnection(network.rtc_configuration())
        try:
            pc.addTransceiver("audio")
            network.install(pc)
            await pc.setLocalDescription(await pc.createOffer())
            (conn,) = _connections(pc)
            srflx = [c for c in conn.local_candidates if c.type == "srflx"]
            assert srflx and stun_server.requests >= 1
            assert all(c.related_port == base and c.port == base for c in srflx)
            assert {c.port for c in conn.local_candidates} == {base}
        finally:
            await pc.close()
        assert network.ports is not None and network.ports.free == 2
    finally:
        transport.close()
