"""Hostile input at every parser (issue 23, findings 6 and 7): JSON nested thousands deep or
too large is an OpenAI-shaped 4xx or an ``error`` event, never a 500 or a dead call; an
offer without a DTLS fingerprint is refused; the upstream's own error text never reaches a
client."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest

from gateway.api.appkeys import CALLS
from gateway.jsonlimits import JsonTooDeep, JsonTooLarge, loads_limited, nesting_depth
from gateway.upstream.errors import client_error, safe_message
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import ADMIN, API_KEY, Gateway, running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, tone
from tests.test_api_errors import SECRETS, assert_error_shape, post_sdp, real_offer
from tests.waiting import until

BOMB = "[" * 50_000 + "]" * 50_000


def test_loads_limited() -> None:
    assert loads_limited('{"a": [1, {"b": "[[[[["}]}', max_bytes=100, max_depth=3) == {
        "a": [1, {"b": "[[[[["}]}
    with pytest.raises(JsonTooDeep):
        loads_limited("[[[[1]]]]", max_bytes=100, max_depth=3)
    with pytest.raises(JsonTooDeep):
        loads_limited(BOMB, max_bytes=10**6, max_depth=64)
    with pytest.raises(JsonTooLarge):
        loads_limited("[" + "1," * 100 + "1]", max_bytes=100, max_depth=64)
    with pytest.raises(ValueError):
        loads_limited(b"\xff{", max_bytes=100, max_depth=64)
    # Brackets inside strings, escaped quotes included, are not structure.
    assert nesting_depth(b'{"x": "\\"[[[[[[[[[[[["}', stop_after=2) == 1
    assert isinstance(JsonTooDeep(1), ValueError) and isinstance(JsonTooLarge(2, 1), ValueError)


@pytest.fixture
async def gw(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.INFO)
    async with running_fake() as (fake, url), running_gateway(
            url, env={"GATEWAY_DEMO_ENABLED": "true",
                      "GATEWAY_SERVER_MAX_BODY_BYTES": "200000"}) as g:
        g.fake = fake  # type: ignore[attr-defined]
        yield g
    for s in SECRETS:
        assert s not in caplog.text, "a secret reached the logs"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], \
        "hostile input was logged as an error"


async def test_http_json_bombs_are_400_everywhere(gw: Gateway) -> None:
    key = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    deep_session = '{"session": ' + "[" * 5000 + "]" * 5000 + "}"
    for path, headers in (("/v1/realtime/client_secrets", key),
                          ("/v1/realtime/sessions", key),
                          ("/api/session", {"Content-Type": "application/json"})):
        for body in (BOMB[:150_000], deep_session):
            async with gw.http.post(gw.base + path, data=body, headers=headers) as r:
                assert r.status == 400, (path, r.status, await r.text())
                assert_error_shape(await r.json(), "invalid_json")
    # The multipart call route's session part.
    form = aiohttp.FormData()
    form.add_field("sdp", await real_offer(), content_type="application/sdp")
    form.add_field("session", deep_session, content_type="application/json")
    async with gw.http.post(f"{gw.base}/v1/realtime/calls", data=form,
                            headers={"Authorization": f"Bearer {API_KEY}"}) as r:
        assert r.status == 400
        body = await r.json()
        assert_error_shape(body, "invalid_json")
        assert body["error"]["param"] == "session"
    # An admin JSON route (coach needs a call: 404 first would hide the parse, so the body
    # is checked on a live call).
    peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
    try:
        await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
        call_id = next(iter(gw.app[CALLS])).call_id
        async with gw.http.post(f"{gw.base}/admin/calls/{call_id}/coach", data=BOMB[:100_000],
                                headers={"Authorization": f"Bearer {ADMIN}",
                                         "Content-Type": "application/json"}) as r:
            assert r.status == 400, await r.text()
            assert_error_shape(await r.json(), "invalid_json")
    finally:
        await peer.close()
    assert len(gw.app[CALLS]) == 0 or await _calls_drained(gw)


async def _calls_drained(gw: Gateway) -> bool:
    await until(lambda: len(gw.app[CALLS]) == 0, 10, "the call closed")
    return True


async def test_demo_token_route_refuses_a_bad_body(gw: Gateway) -> None:
    """The demo route reads {"profile", "dialect"}: a body that is not a JSON object, or
    those fields of the wrong kind, are 400s in OpenAI's shape (garbage was a 200)."""
    url, ctype = gw.base + "/api/session", {"Content-Type": "application/json"}
    for body, code in ((b"\xff\xfe{", "invalid_json"), (b"{", "invalid_json"),
                       (b"[1]", "invalid_json"), (b'{"profile": 5}', "invalid_type"),
                       (b'{"dialect": "gamma"}', "invalid_value"),
                       (b'{"profile": "nope"}', "model_not_found")):
        async with gw.http.post(url, data=body, headers=ctype) as r:
            assert r.status == 400, (body, r.status)
            assert_error_shape(await r.json(), code)
    # What the demo page posts (profile null: the default), and an empty body: a token.
    for data in (b'{"profile": null, "dialect": "ga"}', b'{"dialect": "beta"}', b""):
        async with gw.http.post(url, data=data, headers=ctype) as r:
            assert r.status == 200, (data, await r.text())
            assert (await r.json())["value"].startswith("ek_")


async def test_deep_events_on_the_data_channel_and_websocket_keep_the_call(
        gw: Gateway) -> None:
    peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
    try:
        await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
        peer.channel.send('{"type": "session.update", "session": ' + "[" * 20_000 +
                          "]" * 20_000 + "}")
        err = await peer.next_event("error")
        assert err["error"]["code"] == "invalid_json" and "deeper" in err["error"]["message"]
        peer.send({"type": "session.update", "session": {
            "type": "realtime", "audio": {"output": {"voice": "ash"}}}})
        await peer.next_event("session.updated")  # the call is alive
        assert len(gw.app[CALLS]) == 1
    finally:
        await peer.close()
    url = gw.base.replace("http", "ws") + "/v1/realtime?model=gpt-realtime"
    async with gw.http.ws_connect(url, headers={"Authorization": f"Bearer {API_KEY}"}) as ws:
        await ws.send_str(BOMB)
        while True:
            msg = json.loads((await ws.receive(timeout=10)).data)
            if msg["type"] == "error":
                break
        assert msg["error"]["code"] == "invalid_json"
        await ws.send_str(json.dumps({"type": "input_audio_buffer.clear"}))
        await until(lambda: any(e["type"] == "input_audio_buffer.clear"
                                for e in gw.fake.conn.received),  # type: ignore[attr-defined]
                    10, "the WebSocket call still forwards events")


async def test_offer_without_dtls_fingerprint_is_refused(gw: Gateway) -> None:
    sdp = "\r\n".join(line for line in (await real_offer()).split("\r\n")
                      if not line.startswith("a=fingerprint:"))
    status, body = await post_sdp(gw, sdp, await gw.mint())
    assert status == 400, body
    assert_error_shape(body, "invalid_sdp")
    assert "fingerprint" in body["error"]["message"]
    assert len(gw.app[CALLS]) == 0


LEAKY = ("Incorrect API key provided: sk-proj-****************************abcd. You can "
         "find your API key at https://platform.openai.com/account/api-keys.")


def test_upstream_error_text_is_replaced() -> None:
    assert "sk-" not in safe_message("invalid_api_key", LEAKY)
    assert "sk-" not in safe_message("whatever", LEAKY)
    leaks = ["You exceeded your current quota in organization org-AbC123.",
             "Project proj_abc does not have access to model gpt-x",
             "see wss://api.openai.com/v1/realtime for details",
             "contact ops@example.com"]
    for text in leaks:
        out = client_error({"type": "invalid_request_error", "code": "x", "message": text,
                            "param": None, "event_id": "e1"})
        assert out["message"] != text and out["code"] == "x" and out["event_id"] == "e1"
    # A plain message about the client's own request is kept: it helps the client.
    plain = "Invalid value: 'shimmerx'. Supported values are: 'alloy' and 'ash'."
    assert safe_message("invalid_value", plain, "invalid_request_error") == plain
    assert safe_message("rate_limit_exceeded", "Rate limit reached for org-x") != \
        "Rate limit reached for org-x"


async def test_upstream_errors_reach_the_client_in_the_gateways_words(gw: Gateway) -> None:
    fake = gw.fake  # type: ignore[attr-defined]
    peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
    try:
        await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
        await until(lambda: fake.conns, 10, "the upstream connection")
        await fake.conn.send({"type": "error", "event_id": "event_up1", "error": {
            "type": "invalid_request_error", "code": "invalid_api_key", "message": LEAKY,
            "param": None, "event_id": "client_ev_7"}})
        err = await peer.next_event("error")
        assert err["error"]["code"] == "invalid_api_key"
        assert err["error"]["event_id"] == "client_ev_7"
        assert err["error"]["type"] == "invalid_request_error"
        assert "sk-" not in json.dumps(err) and "openai" not in json.dumps(err).lower()
        await fake.conn.send({"type": "response.done", "event_id": "event_up2", "response": {
            "object": "realtime.response", "id": "resp_1", "status": "failed",
            "status_details": {"type": "failed", "error": {
                "type": "server_error", "code": "org_error", "message": LEAKY}},
            "output": []}})
        done = await peer.next_event("response.done")
        assert "sk-" not in json.dumps(done)
        assert done["response"]["status_details"]["error"] == {"type": "server_error",
                                                               "code": "org_error"}
    finally:
        await peer.close()
    await asyncio.sleep(0)
