"""Transcription sessions through the gateway to the local engine, recorded like calls.

GA: the openai SDK's ``client.realtime.connect(extra_query={"intent": "transcription"})``
with an API key, and a ``client_secrets`` token minted for ``session.type:
"transcription"``. Beta: ``POST /v1/realtime/transcription_sessions`` and
``transcription_session.update``. Every event the clients receive validates against their
dialect's types (GA: tests/oracle.py; beta: tests/dialect/validators.py).
"""

from __future__ import annotations

import asyncio
import json
import wave
from typing import Any

import numpy as np
import websockets
from openai import AsyncOpenAI
from openai.types.realtime import ClientSecretCreateResponse

from tests.dialect.validators import validate_beta_server as validate_beta_server_event
from tests.gateway_fixtures import API_KEY, Gateway, running_gateway
from tests.oracle import validate_server_event
from tests.test_ws_local_engine import speech24, stream
from tests.waiting import until

NO_KEY = {"OPENAI_API_KEY": ""}
UPDATE = {"type": "transcription", "audio": {"input": {
    "format": {"type": "audio/pcm", "rate": 24000},
    "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
    "noise_reduction": {"type": "near_field"},
    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}},
    "include": ["item.input_audio_transcription.logprobs"]}


async def read_until(recv: Any, last: str, timeout_s: float = 30) -> list[dict[str, Any]]:
    """Raw events until one of type ``last`` (inclusive)."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        while not out or out[-1]["type"] != last:
            out.append(json.loads(await recv()))
    return out


async def recording_of(gw: Gateway) -> tuple[dict[str, Any], list[dict[str, Any]],
                                             np.ndarray]:
    await until(lambda: list(gw.recordings.rglob("metadata.json")), 10, "the recording")
    d = next(gw.recordings.rglob("metadata.json")).parent
    meta = json.loads((d / "metadata.json").read_text())
    lines = [json.loads(x) for x in (d / "transcript.jsonl").read_text().splitlines()]
    with wave.open(str(d / "audio.wav")) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    return meta, lines, frames


async def test_openai_sdk_transcription_session_over_websocket(local_engine_url: str) -> None:
    async with running_gateway(local_engine_url, env=NO_KEY) as gw:
        client = AsyncOpenAI(api_key=API_KEY,
                             websocket_base_url=gw.base.replace("http", "ws") + "/v1")
        async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
            created = (await read_until(conn.recv_bytes, "session.created"))[-1]
            validate_server_event(created)
            assert created["session"]["type"] == "transcription"
            assert "model" not in created["session"]
            await conn.session.update(session=UPDATE)  # type: ignore[arg-type]
            updated = (await read_until(conn.recv_bytes, "session.updated"))[-1]
            validate_server_event(updated)
            a_in = updated["session"]["audio"]["input"]
            assert a_in["transcription"]["model"] == "gpt-4o-transcribe"
            assert a_in["noise_reduction"] == {"type": "near_field"}
            assert updated["session"]["include"] == UPDATE["include"]

            async def append(b64: str) -> None:
                await conn.input_audio_buffer.append(audio=b64)

            sender = asyncio.ensure_future(stream(append, speech24("hello")))
            try:
                events = await read_until(
                    conn.recv_bytes, "conversation.item.input_audio_transcription.completed")
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            for ev in events:
                validate_server_event(ev)
            types = [e["type"] for e in events]
            for t in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                      "input_audio_buffer.committed",
                      "conversation.item.input_audio_transcription.delta"):
                assert t in types, types
            assert not [t for t in types if t.startswith("response.")]
            said = events[-1]["transcript"]
            assert "hello" in said.lower()
            # A transcription session answers nothing: a response.create is refused.
            await conn.response.create()
            err = (await read_until(conn.recv_bytes, "error"))[-1]
            validate_server_event(err)
            assert "transcription session" in err["error"]["message"]
        await client.close()
        meta, lines, frames = await recording_of(gw)
        assert meta["session_type"] == "transcription" and meta["transport"] == "websocket"
        caller = [x for x in lines if x["kind"] == "utterance" and x["speaker"] == "caller"]
        assert [x["text"] for x in caller] == [said]
        assert not [x for x in lines if x.get("speaker") == "agent"]
        assert np.abs(frames[:, 0]).max() > 3000  # the caller's speech
        assert np.abs(frames[:, 1]).max() == 0    # no agent channel content


async def test_a_transcription_token_and_its_locks(local_engine_url: str) -> None:
    toml = """
[profiles.default]
locked = ["transcription"]
"""
    async with running_gateway(local_engine_url, env=NO_KEY, toml=toml) as gw:
        async with gw.http.post(f"{gw.base}/v1/realtime/client_secrets", json={
                "session": UPDATE}, headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            body = await r.json()
            assert r.status == 200, body
        ClientSecretCreateResponse.model_validate(body, strict=True)
        assert body["session"]["object"] == "realtime.transcription_session"
        assert body["session"]["audio"]["input"]["transcription"]["model"] == \
            "gpt-4o-transcribe"
        base = gw.base.replace("http", "ws") + "/v1/realtime"
        auth = {"Authorization": f"Bearer {body['value']}"}
        async with websockets.connect(base + "?intent=transcription",
                                      additional_headers=auth) as ws:
            created = (await read_until(ws.recv, "session.created"))[-1]
            validate_server_event(created)
            # The token's session reached the engine: minted settings in force.
            assert created["session"]["audio"]["input"]["noise_reduction"] == \
                {"type": "near_field"}
            # The browser holding the token may not change a locked field ...
            await ws.send(json.dumps({"type": "session.update", "event_id": "ev_1",
                                      "session": {"type": "transcription", "audio": {"input": {
                                          "transcription": {"model": "whisper-1"}}}}}))
            err = (await read_until(ws.recv, "error"))[-1]
            validate_server_event(err)
            assert err["error"]["code"] == "locked_field"
            assert err["error"]["param"] == "session.audio.input.transcription"
            assert err["error"]["event_id"] == "ev_1"
            # ... may change an open one, and not turn the session into a conversation.
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "transcription", "audio": {"input": {
                    "noise_reduction": {"type": "far_field"}}}}}))
            upd = (await read_until(ws.recv, "session.updated"))[-1]
            validate_server_event(upd)
            assert upd["session"]["audio"]["input"]["noise_reduction"] == {"type": "far_field"}
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "instructions": "Talk."}}))
            err = (await read_until(ws.recv, "error"))[-1]
            assert err["error"]["param"] == "session.type"
        # A realtime token does not open a transcription session (and says why).
        token = await gw.mint({"type": "realtime"})
        with_token = {"Authorization": f"Bearer {token}"}
        async with gw.http.get(base + "?intent=transcription", headers={
                **with_token, "Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="
        }) as r:
            assert r.status == 400
            assert (await r.json())["error"]["param"] == "intent"
        async with gw.http.get(base + "?intent=translation", headers={
                "Authorization": f"Bearer {API_KEY}", "Upgrade": "websocket"}) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "invalid_value"


async def test_beta_transcription_session(local_engine_url: str) -> None:
    async with running_gateway(local_engine_url, env=NO_KEY) as gw:
        async with gw.http.post(f"{gw.base}/v1/realtime/transcription_sessions", json={
                "input_audio_format": "pcm16",
                "input_audio_transcription": {"model": "gpt-4o-mini-transcribe"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                "client_secret": {"expires_after": {"anchor": "created_at", "seconds": 120}}},
                headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            minted = await r.json()
            assert r.status == 200, minted
        assert minted["object"] == "realtime.transcription_session"
        assert minted["client_secret"]["value"].startswith("ek_")
        url = gw.base.replace("http", "ws") + "/v1/realtime?intent=transcription"
        async with websockets.connect(url, additional_headers={
                "Authorization": f"Bearer {minted['client_secret']['value']}",
                "OpenAI-Beta": "realtime=v1"}) as ws:
            created = (await read_until(ws.recv, "transcription_session.created"))[-1]
            assert created["session"]["input_audio_format"] == "pcm16"
            await ws.send(json.dumps({"type": "transcription_session.update", "session": {
                "input_audio_noise_reduction": {"type": "far_field"}}}))
            updated = (await read_until(ws.recv, "transcription_session.updated"))[-1]
            validate_beta_server_event(updated)
            assert updated["session"]["input_audio_noise_reduction"] == {"type": "far_field"}

            async def append(b64: str) -> None:
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64}))

            sender = asyncio.ensure_future(stream(append, speech24("hello")))
            try:
                events = await read_until(
                    ws.recv, "conversation.item.input_audio_transcription.completed")
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            for ev in events:
                validate_beta_server_event(ev)
            assert "hello" in events[-1]["transcript"].lower()
            assert not [e for e in events if e["type"].startswith("response.")]
