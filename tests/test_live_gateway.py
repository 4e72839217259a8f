"""GPT-Live through the gateway: the official SDK's Live client (``client.live.connect()``),
unchanged, against the gateway, which speaks Live to the real local engine. Every event the
gateway sends a Live client is validated against ``openai.types.live`` (tests/oracle.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import wave
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from aiortc import RTCSessionDescription
from openai import AsyncOpenAI

from gateway.api.appkeys import CALLS, METRICS
from tests.gateway_fixtures import API_KEY, Gateway, running_gateway
from tests.localrt.helpers import silence, speech
from tests.localrt.live_helpers import LiveProbe
from tests.oracle import validate_live_server_event
from tests.peers import ClientPeer, PcmSourceTrack, from_pcm
from tests.test_e2e_local_engine import speech48
from tests.waiting import until

LIVE_PROFILE = """
default_profile = "agent"
[profiles.agent]
api = "realtime"
model = "gpt-realtime"
[profiles.live]
api = "live"
model = "gpt-live-1"
upstream_model = "gpt-live-1"
instructions = "Be brief."
tools = ["lookup_customer"]
[profiles.locked]
api = "live"
model = "gpt-live-locked"
models = ["gpt-live-locked"]
upstream_model = "gpt-live-1"
instructions = "Only the operator's words."
locked = ["instructions"]
"""
GUARDS = {"OPENAI_API_KEY": "", "GATEWAY_GUARDS_IDLE_PROMPT_S": "60",
          "GATEWAY_GUARDS_IDLE_HANGUP_S": "120"}


@contextlib.asynccontextmanager
async def gateway(engine_url: str, **env: str) -> AsyncIterator[Gateway]:
    async with running_gateway(engine_url, env={**GUARDS, **env}, toml=LIVE_PROFILE) as gw:
        yield gw


@contextlib.asynccontextmanager
async def live_client(gw: Gateway, key: str = API_KEY) -> AsyncIterator[LiveProbe]:
    client = AsyncOpenAI(api_key=key, base_url=gw.base + "/v1")
    try:
        async with client.live.connect() as conn:
            probe = LiveProbe(conn)
            async with probe:
                yield probe
    finally:
        await client.close()


async def start(probe: LiveProbe, **session: Any) -> dict[str, Any]:
    await probe.conn.session.start(session={"model": "gpt-live-1", **session},
                                   event_id="start")
    return await probe.next("session.started")


async def live_webrtc(gw: Gateway, peer: ClientPeer) -> tuple[dict[str, Any], str]:
    """The documented Live WebRTC flow with an API key: the offer in ``POST
    /v1/live/sessions``, the answer applied, ``session.started`` on the data channel.
    Returns the create response and the resume token header."""
    sdp = await peer.offer()
    async with gw.http.post(gw.base + "/v1/live/sessions", json={
            "session": {"model": "gpt-live-1"},
            "transport": {"type": "webrtc", "sdp": sdp}},
            headers={"Authorization": f"Bearer {API_KEY}"}) as r:
        body = await r.json()
        assert r.status == 200, body
        resume = r.headers.get("X-Gateway-Resume-Token", "")
    await peer.pc.setRemoteDescription(RTCSessionDescription(
        sdp=body["transport"]["sdp"], type="answer"))
    return body, resume


async def recording(gw: Gateway) -> tuple[Any, list[dict[str, Any]]]:
    await until(lambda: list(gw.recordings.rglob("metadata.json")), 15, "the recording")
    d = next(gw.recordings.rglob("metadata.json")).parent
    lines = [json.loads(x) for x in (d / "transcript.jsonl").read_text().splitlines()]
    return d, lines


async def test_sdk_spoken_turn_is_recorded_and_counted(local_engine_url: str) -> None:
    async with gateway(local_engine_url) as gw:
        async with live_client(gw) as probe:
            started = await start(probe, instructions="Be brief.")
            assert started["client_event_id"] == "start"
            session = started["session"]
            # The profile's public name, the gateway's call id: never the upstream's.
            assert session["model"] == "gpt-live-1" and session["id"].startswith("rtc_")
            assert session["audio"]["output"]["voice"] == "marin"
            await probe.append(speech("hello"), realtime=4)
            heard = await probe.next("session.input_transcript.delta")
            assert "hello" in heard["delta"].lower()
            said = await probe.next("session.output_transcript.delta")
            assert said["delta"].startswith("Hello")
            await probe.next("session.output_audio.delta")
            await probe.append(silence(1500), realtime=4)
            await probe.conn.session.close(event_id="bye")
            closed = await probe.next("session.closed")
            assert closed["reason"] == "close_requested" and closed["client_event_id"] == "bye"
            assert closed["session"]["id"] == session["id"]
        audio = sum(len(e["delta"]) * 3 // 4 for e in probe.of("session.output_audio.delta"))
        assert audio > 48 * 500
        assert "local-offline" not in json.dumps(probe.events)
        d, lines = await recording(gw)
        meta = json.loads((d / "metadata.json").read_text())
        assert meta["dialect"] == "live" and meta["end_reason"] == "client_closed"
        with wave.open(str(d / "audio.wav")) as w:
            assert w.getnchannels() == 2
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
        assert np.abs(pcm[:, 0]).max() > 1000 and np.abs(pcm[:, 1]).max() > 1000
        spoken = [(x["speaker"], x["text"]) for x in lines if x["kind"] == "utterance"]
        assert any(s == "caller" and "hello" in t.lower() for s, t in spoken), spoken
        assert any(s == "agent" and t.startswith("Hello") for s, t in spoken), spoken
        await until(lambda: not gw.app[CALLS].get(session["id"]), 10, "the call's end")
        async with gw.http.get(gw.base + "/metrics") as r:
            assert 'gateway_calls_by_api_total{api="live"} 1.0' in await r.text()
        reg = gw.app[METRICS].registry
        assert reg.get_sample_value("gateway_calls_total", {
            "transport": "websocket", "outcome": "client_closed"}) == 1.0


async def test_bad_input_is_answered_as_live_answers_it(local_engine_url: str) -> None:
    async with gateway(local_engine_url) as gw, live_client(gw) as probe:
        await probe.send({"type": "session.update", "event_id": "early",
                          "session": {"triggers": []}})
        early = await probe.next("error")
        assert early["error"]["code"] == "session_not_started"
        assert early["client_event_id"] == "early"
        await probe.send({"type": "session.begin"})
        assert (await probe.next("error"))["error"]["param"] == "type"
        await probe.send({"type": "session.start", "event_id": "s1",
                          "session": {"model": "gpt-live-1", "colour": "red"}})
        unknown = await probe.next("error")
        assert unknown["error"]["code"] == "unknown_parameter"
        assert unknown["error"]["param"] == "session.colour"
        await probe.send({"type": "session.start", "event_id": "s2",
                          "session": {"model": "gpt-realtime"}})
        cross = await probe.next("error")
        assert cross["error"]["code"] == "unsupported_api"
        assert "gpt-live-1" in cross["error"]["message"]
        await start(probe)  # the session still starts after refused attempts
        await probe.send({"type": "session.input_audio.append", "audio": "", "volume": 3,
                          "event_id": "a1"})
        extra = await probe.next("error")
        assert extra["error"] == {"type": "invalid_request_error", "code": "unknown_parameter",
                                  "message": extra["error"]["message"],
                                  "param": "volume", "client_event_id": "a1"}
        await probe.send({"type": "session.start", "event_id": "again",
                          "session": {"model": "gpt-live-1"}})
        assert (await probe.next("error"))["client_event_id"] == "again"
        await probe.send({"type": "session.update", "event_id": "u1",
                          "session": {"delegation": {"type": "responses",
                                                     "responses": {"model": "m"}}}})
        assert (await probe.next("error"))["error"]["param"] == "session.delegation.type"
        await probe.send({"type": "session.close", "event_id": "bye"})
        await probe.send({"type": "session.input_audio.mute", "event_id": "late"})
        late = await probe.next("error")
        assert late["error"]["code"] == "session_closed" and late["client_event_id"] == "late"
        assert (await probe.next("session.closed"))["client_event_id"] == "bye"


async def live_secret(gw: Gateway) -> str:
    async with gw.http.post(gw.base + "/v1/live/client_secrets",
                            headers={"Authorization": f"Bearer {API_KEY}"},
                            json={"session": {"model": "gpt-live-locked"}}) as r:
        minted = await r.json()
        assert r.status == 200, minted
    assert minted["session"]["instructions"] == "Only the operator's words."
    return str(minted["value"])


async def test_locks_and_client_secrets(local_engine_url: str) -> None:
    async with gateway(local_engine_url) as gw:
        async with live_client(gw, key=await live_secret(gw)) as probe:
            await probe.conn.session.start(session={"model": "gpt-live-locked",
                                                    "instructions": "Say anything."},
                                           event_id="x")
            refused = await probe.next("error")
            assert refused["error"]["code"] == "locked_field"
            assert refused["error"]["param"] == "session.instructions"
        # A refused start spends the secret (single use): the client mints another.
        async with live_client(gw, key=await live_secret(gw)) as probe:
            started = await start(probe, model="gpt-live-locked",
                                  instructions="Only the operator's words.")
            assert started["session"]["model"] == "gpt-live-locked"
            await probe.conn.session.instructions.append(content="Be rude.", delegation_id=None,
                                                         event_id="ia")
            locked = await probe.next("error")
            assert locked["error"]["code"] == "locked_field" and locked["client_event_id"] == "ia"
        # A Live secret is not a Realtime one, and the reverse.
        realtime_secret = await gw.mint({"model": "gpt-realtime"})
        async with live_client(gw, key=realtime_secret) as probe:
            await probe.conn.session.start(session={"model": "gpt-live-1"})
            assert (await probe.next("error"))["error"]["code"] == "unsupported_api"
        async with gw.http.post(gw.base + "/v1/realtime/client_secrets",
                                headers={"Authorization": f"Bearer {API_KEY}"},
                                json={"session": {"type": "realtime",
                                                  "model": "gpt-live-1"}}) as r:
            body = await r.json()
        assert r.status == 400 and body["error"]["code"] == "unsupported_api"
        for action, status in (("accept", 404), ("hangup", 404)):
            async with gw.http.post(f"{gw.base}/v1/live/sessions/rtc_nope/{action}",
                                    headers={"Authorization": f"Bearer {API_KEY}"}) as r:
                assert r.status == status
                assert (await r.json())["error"]["code"] == "session_not_found"


async def test_client_delegation_round_trip_is_recorded(local_engine_url: str) -> None:
    async with gateway(local_engine_url) as gw:
        async with live_client(gw) as probe:
            await start(probe, delegation={"type": "client", "acknowledgement_delay_ms": 5000})
            await probe.append(speech("lookup_account"), realtime=4)
            created = await probe.next("session.delegation.created")
            deleg = created["delegation"]
            assert deleg["target"] == "client"
            await probe.conn.session.commentary.append(
                content=json.dumps({"customer": {"name": "Jane Doe", "account_id": "12345"}}),
                delegation_id=deleg["id"], event_id="result")
            ack = await probe.next("session.commentary.appended")
            assert ack["client_event_id"] == "result"
            said = await probe.next("session.output_transcript.delta")
            assert "Jane Doe" in said["delta"]
            await probe.conn.session.close()
            await probe.next("session.closed")
        _d, lines = await recording(gw)
        kinds = [(x["kind"], x.get("tool")) for x in lines]
        assert ("tool_call", "delegation") in kinds and ("tool_result", "delegation") in kinds


async def test_server_tool_under_responses_delegation(local_engine_url: str) -> None:
    async with gateway(local_engine_url) as gw:
        async with live_client(gw) as probe:
            started = await start(probe, delegation={
                "type": "responses", "acknowledgement_delay_ms": 5000,
                "responses": {"model": "gpt-5-mini", "tools": []}})
            tools = started["session"]["delegation"]["responses"]["tools"]
            assert [t["name"] for t in tools] == ["lookup_customer"]
            await probe.append(speech("lookup_account"), realtime=4)
            while True:
                ev = await probe.next("response.event")
                if ev["event"]["type"] == "response.output_item.done":
                    break
            call_id = ev["event"]["item"]["call_id"]
            await probe.conn.response.item.create(item={
                "type": "function_call_output", "call_id": call_id, "output": "{}"},
                event_id="mine")
            refused = await probe.next("error")
            assert refused["error"]["code"] == "tool_output_refused"
            said = await probe.next("session.output_transcript.delta")
            assert said["delta"]  # the gateway's tool result, spoken by the model
            await probe.conn.session.close()
            await probe.next("session.closed")
        _d, lines = await recording(gw)
        results = [x for x in lines if x["kind"] == "tool_result"]
        assert results and results[0]["tool"] == "lookup_customer"
        assert results[0]["outcome"] == "ok"


async def test_idle_guard_prompts_through_commentary(local_engine_url: str) -> None:
    async with gateway(local_engine_url, GATEWAY_GUARDS_IDLE_PROMPT_S="1") as gw:
        async with live_client(gw) as probe:
            await start(probe)
            said = await probe.next("session.output_transcript.delta")
            assert "still there" in said["delta"]
            # The acknowledgement of the gateway's own append is not the client's business.
            assert not probe.of("session.commentary.appended")
            await probe.conn.session.close()
            await probe.next("session.closed")
        _d, lines = await recording(gw)
        assert any(x["kind"] == "idle_prompt" for x in lines)


async def test_webrtc_live_call_with_barge_in(local_engine_url: str) -> None:
    # "hello" gets a long enough answer to talk over; "help" a second after it starts.
    hello = speech48("hello", lead_s=0.5, tail_s=0.0)
    talk_over = speech48("help", lead_s=1.2, tail_s=6.0)
    pcm = np.concatenate([hello, talk_over])
    async with gateway(local_engine_url) as gw:
        peer = ClientPeer(PcmSourceTrack(from_pcm(pcm)))
        try:
            body, resume = await live_webrtc(gw, peer)
            assert resume.startswith("rs_")
            started = await peer.next_event("session.started", 15)
            assert started["session"]["id"] == body["session"]["id"]
            assert "format" not in started["session"].get("audio", {})
            await peer.next_event("session.input_transcript.delta", 30)
            await peer.next_event("session.output_transcript.delta", 30)
            await until(lambda: _interrupted(gw), 30, "a barge-in")
            async with gw.http.post(f"{gw.base}/v1/live/sessions/{body['session']['id']}"
                                    "/hangup",
                                    headers={"Authorization": f"Bearer {API_KEY}"}) as r:
                assert r.status == 200
            closed = await peer.next_event("session.closed", 10)
            assert closed["reason"] == "remote_hangup"
        finally:
            await peer.close()
        for ev in peer.all_events:
            validate_live_server_event(ev)
        _d, lines = await recording(gw)
        cut = [x for x in lines if x["kind"] == "interruption"]
        assert cut and cut[0]["heard_ms"] > 0
        agent = [x for x in lines if x["kind"] == "utterance" and x["speaker"] == "agent"]
        assert any(x.get("truncated") for x in agent), agent


def _interrupted(gw: Gateway) -> bool:
    return any(c.stats.interruptions for c in gw.app[CALLS])


async def test_phone_call_on_a_live_profile(local_engine_url: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.upstream.live_client import LiveUpstreamConnection
    from tests.fake_twilio import FakeTwilio
    from tests.test_twilio import AUTH_TOKEN, ENV, PUBLIC

    monkeypatch.setenv("GATEWAY_TWILIO_DTMF", "input")  # keypad digits go to the model too
    async with gateway(local_engine_url, **ENV) as gw:
        twilio = FakeTwilio(gw.http, gw.base, PUBLIC, AUTH_TOKEN)
        try:
            stream = await twilio.call(query="profile=live")
            await until(lambda: len(gw.app[CALLS]) == 1, 10, "the phone call")
            call = next(iter(gw.app[CALLS]))
            assert isinstance(call.upstream, LiveUpstreamConnection)  # type: ignore[attr-defined]
            # µ-law both ways, passed through: Live takes audio/pcmu 8 kHz.
            assert call.upstream.session["audio"]["format"] == {  # type: ignore[attr-defined]
                "type": "audio/pcmu", "rate": 8000}
            stream.speak(speech("hello", fmt="audio/pcmu"))
            await stream.until(lambda: len(stream.media_in) >= 8000, 30)  # 1 s of the answer
            # A keypad digit reaches the Live model as Live context, which the engine accepts.
            upstream: list[dict[str, Any]] = []
            call.hooks.upstream_gate.append(lambda ev: upstream.append(ev) is None)
            await stream.dtmf("7")
            await until(lambda: any(e["type"] == "session.thinking.appended"
                                    for e in upstream), 10, "the digit acknowledged")
            assert not [e for e in upstream if e["type"] == "error"], upstream
            await stream.stop()
        finally:
            await twilio.close()
        _d, lines = await recording(gw)
        spoken = [(x["speaker"], x["text"]) for x in lines if x["kind"] == "utterance"]
        assert any(s == "caller" and "hello" in t.lower() for s, t in spoken), spoken
        assert any(s == "agent" for s, _t in spoken), spoken



async def test_sideband_attaches_to_a_live_session(local_engine_url: str) -> None:
    """The SDK's ``client.live.sideband.connect(session_id=…)``: the app's server hears the
    session's events and the caller's audio, and steers it with Live events; its errors are
    its own; a Realtime call or an unknown id is refused."""
    async with gateway(local_engine_url) as gw:
        async with live_client(gw) as probe:
            session = (await start(probe))["session"]
            client = AsyncOpenAI(api_key=API_KEY, base_url=gw.base + "/v1")
            try:
                async with client.live.sideband.connect(session_id=session["id"]) as sb:
                    await probe.append(speech("hello"), realtime=4)
                    seen: list[dict[str, Any]] = []
                    audio = 0
                    async with asyncio.timeout(20):
                        async for ev in sb:
                            raw = ev.model_dump(exclude_unset=True)
                            seen.append(raw)
                            if raw["type"] == "session.input_audio.append":
                                audio += len(base64.b64decode(raw["audio"]))
                                continue
                            validate_live_server_event(raw)
                            if raw["type"] == "session.output_transcript.delta":
                                break
                    assert audio >= 48 * 500  # the caller, reflected (PCM16 24 kHz)
                    assert any(e["type"] == "session.input_transcript.delta" for e in seen)
                    await sb.send({"type": "session.instructions.append",  # type: ignore[misc]
                                   "content": "From the app's server.", "event_id": "sb1"})
                    await sb.send({"type": "session.nonsense"})  # type: ignore[misc]
                    async with asyncio.timeout(10):
                        async for ev in sb:
                            if ev.type == "error":
                                break
                    assert not [e for e in probe.events if e["type"] == "error"]
            finally:
                await client.close()
        for sid, status in (("rtc_nosuch", 404),):
            async with gw.http.get(f"{gw.base}/v1/live/sessions/{sid}/attach", headers={
                    "Authorization": f"Bearer {API_KEY}"}) as r:
                assert r.status == status
                assert (await r.json())["error"]["code"] == "session_not_found"


async def test_frames_the_leg_refuses_are_answered_in_lives_shape(local_engine_url: str
                                                                   ) -> None:
    """Frames a leg refuses before any parsing (binary on the WebSocket, over the size limit
    on the data channel) still get a Live ``error`` (validated against openai.types.live)."""
    async with gateway(local_engine_url, GATEWAY_MEDIA_MAX_EVENT_BYTES="65536") as gw:
        ws_url = gw.base.replace("http", "ws", 1) + "/v1/live/sessions"
        async with gw.http.ws_connect(ws_url, headers={
                "Authorization": f"Bearer {API_KEY}"}) as ws:
            await ws.send_json({"type": "session.start", "session": {"model": "gpt-live-1"}})
            seen: list[dict[str, Any]] = []

            async def next_of(etype: str) -> dict[str, Any]:
                async with asyncio.timeout(15):
                    while True:
                        ev = json.loads((await ws.receive()).data)
                        seen.append(ev)
                        if ev["type"] == etype:
                            return ev

            await next_of("session.started")
            await ws.send_bytes(b"\x00\x01")
            binary = await next_of("error")
            assert binary["error"]["code"] == "invalid_event"
            assert "event_id" not in binary["error"]
            for ev in seen:
                validate_live_server_event(ev)
        peer = ClientPeer(PcmSourceTrack(from_pcm(np.zeros(48000, np.int16))))
        try:
            await live_webrtc(gw, peer)
            await peer.next_event("session.started", 15)
            peer.channel.send(json.dumps({"type": "session.instructions.append",
                                          "content": "x" * 100_000, "delegation_id": None}))
            big = await peer.next_event("error", 10)
            assert big["error"]["code"] == "event_too_large"
            assert "event_id" not in big["error"]
        finally:
            await peer.close()
        for ev in peer.all_events:
            validate_live_server_event(ev)
