"""Twilio's routes against an attacker: replayed webhooks, forged forwarding headers,
tokens of another transport, forged log lines, JSON bombs (issue 23, findings 4-6)."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.api.appkeys import CALLS
from gateway.legs.twilio_leg import TwilioLeg
from tests.fake_twilio import parse_twiml, sid
from tests.test_twilio import eventually, phone_line, refused, setup_failures, the_call


async def test_a_replayed_signed_webhook_mints_no_second_token() -> None:
    async with phone_line() as (up, gw, twilio):
        call_sid = sid("CA")
        form = twilio.form("+15551234567", call_sid)
        twilio.form = lambda caller, cs: dict(form)  # type: ignore[method-assign]
        status, text = await twilio.incoming(call_sid=call_sid)
        assert status == 200, text
        assert parse_twiml(text).parameters["token"].startswith("ek_")
        # The very same signed request again (captured and replayed): refused.
        status, text = await twilio.incoming(call_sid=call_sid)
        assert status == 403, text
        err = json.loads(text)["error"]
        assert err["code"] == "webhook_replayed" and "ek_" not in text
        assert setup_failures(gw, "webhook_replayed") == 1
        # Another call's webhook is answered as always.
        other = twilio.form("+15551234567", sid("CA"))
        other["CallSid"] = sid("CA")
        twilio.form = lambda caller, cs: dict(other)  # type: ignore[method-assign]
        status, text = await twilio.incoming()
        assert status == 200, text
        assert not up.conns


async def test_forwarded_headers_are_ignored_unless_from_a_trusted_proxy() -> None:
    """No public URL and no trusted proxy: X-Forwarded-* cannot choose the signed URL."""
    public = "https://attacker.example"
    fwd = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "attacker.example"}
    async with phone_line({"GATEWAY_PUBLIC_URL": ""}) as (_up, gw, twilio):
        status, _ = await twilio.incoming(headers=fwd, signed_url=f"{public}/twilio/incoming")
        assert status == 403
        # What the gateway really is reached at still verifies (and its TwiML says so).
        status, text = await twilio.incoming(headers=fwd,
                                             signed_url=f"{gw.base}/twilio/incoming")
        assert status == 200, text
        assert parse_twiml(text).stream_url.startswith(gw.base.replace("http", "ws"))
    async with phone_line({"GATEWAY_PUBLIC_URL": "",
                           "GATEWAY_SERVER_TRUSTED_PROXIES": "10.0.0.0/8"}) as (_u, _g, tw):
        status, _ = await tw.incoming(headers=fwd, signed_url=f"{public}/twilio/incoming")
        assert status == 403  # 127.0.0.1 is not in 10/8


async def test_a_realtime_token_cannot_open_a_twilio_stream() -> None:
    async with phone_line() as (up, gw, twilio):
        _, text = await twilio.incoming()
        twiml = parse_twiml(text)
        browser_token = await gw.mint()
        stream = await twilio.connect(twiml, sign=False)
        await stream.begin({"token": browser_token, "profile": "default"})
        await refused(stream)
        assert setup_failures(gw, "invalid_token") == 1
        assert not up.conns and len(gw.app[CALLS]) == 0


async def test_a_twilio_token_cannot_open_a_webrtc_call_or_websocket() -> None:
    from tests.test_api_errors import post_sdp, real_offer

    async with phone_line() as (up, gw, twilio):
        _, text = await twilio.incoming()
        token = parse_twiml(text).parameters["token"]
        status, body = await post_sdp(gw, await real_offer(), token)
        assert status == 401 and body["error"]["code"] == "invalid_token", body
        async with gw.http.get(f"{gw.base}/v1/realtime", headers={
                "Authorization": f"Bearer {token}", "Upgrade": "websocket",
                "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "invalid_token"
        assert not up.conns and len(gw.app[CALLS]) == 0


async def test_stream_messages_cannot_forge_log_lines_nest_deep_or_grow_counters(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with phone_line() as (up, gw, twilio):
        # A start nested thousands deep is not a start (and no 500 / traceback).
        _, text = await twilio.incoming()
        twiml = parse_twiml(text)
        bomb = await twilio.connect(twiml)
        await bomb.send("[" * 20_000 + "]" * 20_000)
        await bomb.send('{"event": "start", "x": ' + "[" * 5000 + "]" * 5000 + "}")
        # A start whose stream SID carries a newline is refused.
        await bomb.send({"event": "start", "streamSid": "MZ1\nFORGED", "start": {
            "streamSid": "MZ1\nFORGED", "customParameters": twiml.parameters}})
        await refused(bomb)
        # A live call: odd event names are logged escaped and counted boundedly.
        a = await twilio.call()
        call = await the_call(gw)
        assert isinstance(call.leg, TwilioLeg)
        await a.send({"event": "bogus\nERROR forged line", "streamSid": a.stream_sid})
        await a.send("[" * 20_000 + "]" * 20_000)
        for i in range(100):
            await a.send({"event": f"made-up-{i}", "streamSid": a.stream_sid})
        await eventually(lambda: sum(call.leg.ignored.values()) >= 102)  # type: ignore[union-attr]
        ignored = call.leg.ignored
        assert ignored["json_too_deep"] == 1
        assert "unknown_event:bogus?ERROR?forged?line" in ignored
        assert len(ignored) <= 33 and ignored["other"] >= 1
        assert len(gw.app[CALLS]) == 1  # the call goes on
        await a.stop()
        await eventually(lambda: len(gw.app[CALLS]) == 0)
    for record in caplog.records:
        assert "\n" not in record.getMessage(), record.getMessage()
        assert record.levelno < logging.ERROR or "Traceback" not in caplog.text
