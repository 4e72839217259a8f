"""WebRTC calls against an attacker (issue 23, findings 2 and 3): a client that stops
reading its data channel, datagrams from strangers to a call's port before and after ICE,
and offers whose peer never connects."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcsctptransport import DataChunk

from gateway.api.appkeys import CALLS, FACTORY
from gateway.call.session import CallSession
from gateway.legs.ice import _connections
from gateway.legs.ice_filter import MAX_QUEUED_DATAGRAMS, GuardedConnection
from gateway.legs.webrtc import WebRtcLeg
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import Gateway, running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, tone
from tests.waiting import until


async def offer_nobody_answers() -> str:
    """A real offer from a peer that is closed at once: it will never do ICE."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("oai-events")
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


def the_call(gw: Gateway) -> CallSession:
    call = next(iter(gw.app[CALLS]))
    assert isinstance(call, CallSession)
    return call


def guarded(call: CallSession) -> GuardedConnection:
    assert isinstance(call.leg, WebRtcLeg)
    (conn,) = _connections(call.leg.pc)
    assert isinstance(conn, GuardedConnection)
    return conn


def media_ports(answer: str) -> list[tuple[str, int]]:
    return [(m.group(1), int(m.group(2))) for m in re.finditer(
        r"a=candidate:\S+ 1 udp \d+ (\d+\.\d+\.\d+\.\d+) (\d+) typ host", answer)]


def flood(targets: list[tuple[str, int]], count: int, size: int = 1200) -> None:
    """RTP-looking datagrams (first byte 0x80) from a socket that never did ICE."""
    payload = b"\x80" + b"\x00" * (size - 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(count):
            for t in targets:
                try:
                    s.sendto(payload, t)
                except OSError:  # ENOBUFS under a burst: the next one goes
                    pass


async def flood_until(targets: list[tuple[str, int]], reached: Callable[[], bool],
                      timeout_s: float = 20.0) -> None:
    """Bursts of 100 datagrams until ``reached()``: one large burst overflows the socket's
    receive buffer while a busy machine keeps the gateway's loop from reading it, and the
    kernel, not the gateway, drops most of it (seen under a CPU hog)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not reached():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: the flood reached the gateway")
        await asyncio.to_thread(flood, targets, 100)
        await asyncio.sleep(0.05)  # the loop reads what the kernel kept


@pytest.fixture
async def env() -> Any:
    async with running_fake() as (fake, url), running_gateway(url, env={
            "GATEWAY_MEDIA_CONNECT_TIMEOUT_S": "1.5",
            "GATEWAY_MEDIA_MAX_CHANNEL_BUFFER_BYTES": "65536",
            "GATEWAY_MEDIA_PORT_MIN": "42100", "GATEWAY_MEDIA_PORT_MAX": "42119",
            "GATEWAY_SERVER_MAX_CALLS": "2"}) as gw:
        yield fake, gw


async def test_an_offer_whose_peer_never_connects_is_released(env: Any) -> None:
    fake, gw = env
    ports = gw.app[FACTORY].ice.ports
    free_before = ports.free
    # max_calls = 2: two abandoned offers would lock out a real caller for good.
    for _ in range(2):
        status, _ = await _post_raw(gw, await offer_nobody_answers())
        assert status == 201
    assert len(gw.app[CALLS]) == 2
    calls = list(gw.app[CALLS])
    await until(lambda: len(gw.app[CALLS]) == 0, 20, "abandoned offers released")
    assert all(c.end_reason == "connect_timeout" for c in calls)  # type: ignore[attr-defined]
    await until(lambda: all(c.ws.closed for c in fake.conns), 10, "their upstreams closed")
    await until(lambda: ports.free == free_before, 10, "their media ports returned")
    # A real caller gets in (and is not released: it connects).
    peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
    try:
        await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
        call = the_call(gw)
        await asyncio.sleep(2.5)  # past the connect deadline: a connected call stays
        assert not call.closing and len(gw.app[CALLS]) == 1
    finally:
        await peer.close()


async def test_datagrams_from_strangers_before_ice_are_not_queued(env: Any) -> None:
    _fake, gw = env
    status, answer = await _post_raw(gw, await offer_nobody_answers())
    assert status == 201
    targets = media_ports(answer)
    assert targets
    conn = guarded(the_call(gw))
    # (before the 1.5 s connect deadline releases the offer and its socket)
    await flood_until(targets, lambda: conn.gw_dropped >= 300)
    assert conn._queue.qsize() == 0  # nothing from an unvalidated source is held
    await until(lambda: len(gw.app[CALLS]) == 0, 20, "the abandoned offer released")


async def test_after_ice_only_the_selected_pair_is_heard(env: Any) -> None:
    _fake, gw = env
    peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
    try:
        await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
        call = the_call(gw)
        conn = guarded(call)
        await until(lambda: conn._nominated.get(1) is not None, 10, "ICE nominated a pair")
        remote = conn._nominated[1].remote_addr
        local = conn._nominated[1].local_addr
        await flood_until([local], lambda: conn.gw_dropped >= 500)
        assert remote != local
        assert conn._queue.qsize() < MAX_QUEUED_DATAGRAMS
        # The real peer is still heard and answered: the call is fine.
        peer.send({"type": "session.update", "session": {
            "type": "realtime", "audio": {"output": {"voice": "ash"}}}})
        await peer.next_event("session.updated")
        assert not call.closing
    finally:
        await peer.close()


async def _post_raw(gw: Gateway, sdp: str) -> tuple[int, str]:
    async with gw.http.post(f"{gw.base}/v1/realtime/calls", data=sdp, headers={
            "Authorization": f"Bearer {await gw.mint()}",
            "Content-Type": "application/sdp"}) as r:
        return r.status, await r.text()


async def test_a_client_that_stops_reading_its_data_channel_is_ended(env: Any) -> None:
    fake, gw = env
    peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
    try:
        await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
        call = the_call(gw)
        sctp = peer.pc.sctp
        assert sctp is not None
        receive = sctp._receive_chunk

        async def deaf(chunk: Any) -> None:  # the client stops reading: no data, no SACKs
            if not isinstance(chunk, DataChunk):
                await receive(chunk)

        sctp._receive_chunk = deaf  # type: ignore[method-assign]
        up = fake.conns[-1]
        text = "x" * 2000
        for _ in range(400):  # ~0.8 MB of events the client never takes
            if call.closing:
                break
            await up.send({"type": "response.output_audio_transcript.delta",
                           "response_id": "resp_1", "item_id": "item_1", "output_index": 0,
                           "content_index": 0, "delta": text})
        await until(lambda: call.closing, 20, "the call of the deaf client ended")
        assert call.end_reason == "client_too_slow"
        assert isinstance(call.leg, WebRtcLeg) or call.leg is None
    finally:
        await peer.close()
