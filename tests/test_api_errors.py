"""Bad input at the HTTP API and on the data channel: OpenAI-shaped errors, nothing else hurt."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from gateway.api.appkeys import CALLS
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import API_KEY, Gateway, running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, tone

SECRETS = ("sk-upstream-secret-never-shown", API_KEY, "test-secret")


def assert_error_shape(body: dict[str, Any], code: str) -> None:
    err = body["error"]
    assert set(err) == {"type", "code", "message", "param"}
    assert err["code"] == code, body
    assert err["message"]
    for s in SECRETS:
        assert s not in str(body)


async def post_sdp(gw: Gateway, sdp: str | bytes, token: str,
                   ctype: str = "application/sdp") -> tuple[int, dict[str, Any]]:
    async with gw.http.post(f"{gw.base}/v1/realtime/calls", data=sdp, headers={
            "Authorization": f"Bearer {token}", "Content-Type": ctype}) as r:
        return r.status, await r.json()


async def real_offer(audio: bool = True) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("oai-events")
    if audio:
        pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


@pytest.fixture
async def gw(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.DEBUG)
    async with running_fake() as (fake, url), running_gateway(
            url, env={"GATEWAY_TOKENS_MIN_TTL_S": "1",
                      "GATEWAY_MEDIA_MAX_EVENT_BYTES": "65536"}) as g:
        yield g
    for s in SECRETS:
        assert s not in caplog.text, "a secret reached the logs"


async def test_sdp_errors(gw: Gateway) -> None:
    status, body = await post_sdp(gw, "hello", await gw.mint())
    assert status == 400
    assert_error_shape(body, "invalid_sdp")
    status, body = await post_sdp(gw, "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=audio x\r\n",
                                  await gw.mint())
    assert status == 400
    assert_error_shape(body, "invalid_sdp")
    status, body = await post_sdp(gw, await real_offer(audio=False), await gw.mint())
    assert status == 400
    assert_error_shape(body, "invalid_sdp")
    assert "audio" in body["error"]["message"]
    status, body = await post_sdp(gw, b"\xff\xfe\x00", await gw.mint())
    assert status == 400
    # A real offer whose audio codecs are all something else (G.711 only): refused by name.
    pcmu_only = "\r\n".join(line for line in (await real_offer()).split("\r\n")
                             if "opus" not in line.lower())
    status, body = await post_sdp(gw, pcmu_only, await gw.mint())
    assert status == 400
    assert_error_shape(body, "invalid_sdp")
    assert "Opus" in body["error"]["message"]
    assert len(gw.app[CALLS]) == 0


async def test_content_type_and_size(gw: Gateway) -> None:
    status, body = await post_sdp(gw, await real_offer(), await gw.mint(), ctype="text/plain")
    assert status == 415
    assert_error_shape(body, "unsupported_content_type")
    status, body = await post_sdp(gw, "v=0\r\n" + "a=x\r\n" * 40000, await gw.mint())
    assert status == 413
    assert_error_shape(body, "body_too_large")


async def test_token_rules(gw: Gateway) -> None:
    offer = await real_offer()
    # missing
    async with gw.http.post(f"{gw.base}/v1/realtime/calls", data=offer,
                            headers={"Content-Type": "application/sdp"}) as r:
        assert r.status == 401
        assert_error_shape(await r.json(), "missing_authorization")
    # forged: a well-formed token signed with another key
    token = await gw.mint()
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    status, body = await post_sdp(gw, offer, forged)
    assert status == 401
    assert_error_shape(body, "invalid_token")
    status, body = await post_sdp(gw, offer, "ek_garbage")
    assert status == 401
    # reused: the first use succeeds, the second is refused
    peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
    try:
        await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", token)
        status, body = await post_sdp(gw, await real_offer(), token)
        assert status == 401
        assert_error_shape(body, "token_already_used")
    finally:
        await peer.close()
    # expired
    short = await gw.mint(expires_after={"anchor": "created_at", "seconds": 1})
    await asyncio.sleep(1.2)
    status, body = await post_sdp(gw, offer, short)
    assert status == 401
    assert_error_shape(body, "token_expired")
    # an API key is not an ephemeral token for the raw-SDP form
    status, body = await post_sdp(gw, offer, API_KEY)
    assert status == 401


async def test_minting_errors(gw: Gateway) -> None:
    url = f"{gw.base}/v1/realtime/client_secrets"
    async with gw.http.post(url, json={}, headers={"Authorization": "Bearer sk-wrong"}) as r:
        assert r.status == 401
        assert_error_shape(await r.json(), "invalid_api_key")
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with gw.http.post(url, json={"session": {"type": "realtime", "model": "gpt-9"}},
                            headers=auth) as r:
        assert r.status == 400
        body = await r.json()
        assert_error_shape(body, "model_not_found")
        assert body["error"]["param"] == "session.model"
    async with gw.http.post(url, data="{", headers={**auth, "Content-Type": "application/json"}
                            ) as r:
        assert r.status == 400
        assert_error_shape(await r.json(), "invalid_json")
    async with gw.http.post(url, json={"expires_after": {"anchor": "created_at",
                                                         "seconds": 99999}}, headers=auth) as r:
        assert r.status == 400
        assert (await r.json())["error"]["param"] == "expires_after.seconds"
    async with gw.http.post(url, json={"session": {"type": "realtime",
                                                   "instructions": "override"}},
                            headers=auth) as r:
        assert r.status == 400
        assert (await r.json())["error"]["param"] == "session.instructions"
    async with gw.http.post(url, json={"session": {"type": "realtime", "model": "gpt-realtime"},
                                       "expires_after": {"anchor": "created_at", "seconds": 30}},
                            headers=auth) as r:
        assert r.status == 200
        body = await r.json()
        assert body["value"].startswith("ek_")
        assert body["session"]["model"] == "gpt-realtime"
        assert "sk-upstream" not in str(body)


async def test_upstream_unreachable_is_502_without_dangling_peer() -> None:
    async with running_gateway("ws://127.0.0.1:9/v1/realtime") as gw:
        status, body = await post_sdp(gw, await real_offer(), await gw.mint())
        assert status == 502
        assert_error_shape(body, "upstream_unreachable")
        assert len(gw.app[CALLS]) == 0


async def test_data_channel_bad_input_does_not_disturb_calls(gw: Gateway) -> None:
    a = ClientPeer(PcmSourceTrack(tone(300, -30)))
    b = ClientPeer(PcmSourceTrack(tone(500, -30)))
    try:
        await a.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
        await b.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
        a.channel.send("not json {")
        assert (await a.next_event("error"))["error"]["code"] == "invalid_json"
        a.send({"type": "no.such.event", "event_id": "e9"})
        err = await a.next_event("error")
        assert err["error"]["code"] == "unknown_event_type"
        assert err["error"]["event_id"] == "e9"
        a.channel.send('{"type": "session.update", "session": {"instructions": "' +
                       "x" * 100_000 + '"}}')
        assert (await a.next_event("error"))["error"]["code"] == "event_too_large"
        a.send({"type": "session.update", "session": {"type": "realtime", "model": "other"}})
        assert (await a.next_event("error"))["error"]["param"] == "session.model"
        a.send({"type": "session.update", "session": {"type": "realtime", "bogus": 1}})
        assert (await a.next_event("error"))["error"]["code"] == "unknown_parameter"
        # Both calls are still alive and answering.
        for p in (a, b):
            p.send({"type": "session.update", "session": {"type": "realtime",
                                                          "audio": {"output": {"voice": "ash"}}}})
            await p.next_event("session.updated")
        assert len(gw.app[CALLS]) == 2
    finally:
        await a.close()
        await b.close()


async def test_hangup(gw: Gateway) -> None:
    peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
    try:
        await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
        assert peer.location
        call_id = peer.location.rsplit("/", 1)[1]
        url = f"{gw.base}/v1/realtime/calls/{call_id}/hangup"
        async with gw.http.post(url) as r:
            assert r.status == 401
        async with gw.http.post(url, headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            assert r.status == 200
        assert len(gw.app[CALLS]) == 0
        async with gw.http.post(url, headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            assert r.status == 404
            assert_error_shape(await r.json(), "call_not_found")
    finally:
        await peer.close()


async def test_cors_preflight() -> None:
    async with running_fake() as (_, url), running_gateway(
            url, env={"GATEWAY_CORS_ORIGINS": "https://app.example"}) as gw:
        async with gw.http.options(f"{gw.base}/v1/realtime/calls", headers={
                "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type"}) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
        async with gw.http.post(f"{gw.base}/v1/realtime/calls", data="x",
                                headers={"Origin": "https://evil.example"}) as r:
            assert "Access-Control-Allow-Origin" not in r.headers
        _ = aiohttp
