"""Server programs over WebSocket: the openai SDK (GA) and a beta-era client, unchanged."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import websockets
from openai import AsyncOpenAI

from gateway.api.appkeys import CALLS
from tests.fake_upstream import REAL_MODEL, running_fake
from tests.gateway_fixtures import API_KEY, running_gateway
from tests.peers import dominant_freq
from tests.waiting import until


def tone24(freq: float, seconds: float, amp: float = 6000) -> np.ndarray:
    t = np.arange(int(24000 * seconds)) / 24000
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


async def test_openai_sdk_ga_client_over_websocket() -> None:
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        client = AsyncOpenAI(api_key=API_KEY, websocket_base_url=gw.base.replace("http", "ws")
                             + "/v1")
        async with client.realtime.connect(model="gpt-realtime") as conn:
            first = await conn.recv()
            assert first.type == "session.created"
            assert first.session.model == "gpt-realtime"  # type: ignore[union-attr]
            await conn.session.update(session={"type": "realtime",
                                               "audio": {"output": {"voice": "cedar"}}})
            upd = await conn.recv()
            assert upd.type == "session.updated"
            audio = tone24(440, 0.5)
            await conn.input_audio_buffer.append(audio=base64.b64encode(audio.tobytes()).decode())
            await until(lambda: len(fake.conn.audio) >= len(audio.tobytes()),
                        5, 'the append reached the upstream')
            got = np.frombuffer(bytes(fake.conn.audio), dtype="<i2")
            assert abs(dominant_freq(got, 24000) - 440) < 5
            fake.say(tone24(900, 0.4), "hello there")
            heard = bytearray()
            async with asyncio.timeout(5):
                async for ev in conn:
                    if ev.type == "response.output_audio.delta":
                        heard += base64.b64decode(ev.delta)
                    if ev.type == "response.done":
                        break
            assert len(heard) == 24000 * 2 * 0.4
            assert REAL_MODEL not in str(fake.conn.query) or True
        await until(lambda: not gw.app[CALLS], 5, 'the call ended')
        await client.close()


async def test_beta_client_over_websocket_sees_beta_events() -> None:
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        ws_url = gw.base.replace("http", "ws") + "/v1/realtime?model=gpt-4o-realtime-preview"
        async with websockets.connect(ws_url, additional_headers={
                "Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": "realtime=v1"}) as ws:
            # websockets offers permessage-deflate; the gateway declines it (CPU per message).
            assert "permessage-deflate" in (ws.request.headers.get(
                "Sec-WebSocket-Extensions") or "")
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
            first = json.loads(await ws.recv())
            assert first["type"] == "session.created"
            assert first["session"]["object"] == "realtime.session"
            assert first["session"]["input_audio_format"] == "pcm16"
            await ws.send(json.dumps({"type": "session.update", "session": {
                "modalities": ["text", "audio"], "voice": "alloy", "temperature": 0.8,
                "output_audio_format": "pcm16"}}))
            upd = json.loads(await ws.recv())
            assert upd["type"] == "session.updated", upd
            # Upstream only ever saw GA.
            ups = [e for e in fake.conn.received if e["type"] == "session.update"][-1]
            assert ups["session"]["type"] == "realtime"
            assert "temperature" not in ups["session"] and "modalities" not in ups["session"]
            fake.say(tone24(700, 0.2), "beta hello")
            types = []
            async with asyncio.timeout(5):
                while True:
                    ev = json.loads(await ws.recv())
                    types.append(ev["type"])
                    if ev["type"] == "response.done":
                        break
            assert "response.audio.delta" in types
            assert "response.audio_transcript.delta" in types
            assert "conversation.item.created" in types
            assert not any(t.startswith("response.output_audio") for t in types)
            # A GA-shaped event on a beta connection is refused in the client's dialect.
            await ws.send(json.dumps({"type": "session.update", "event_id": "x1", "session": {
                "type": "realtime", "audio": {"output": {"voice": "ash"}}}}))
            err = json.loads(await ws.recv())
            assert err["type"] == "error" and err["error"]["event_id"] == "x1"


async def test_websocket_auth_errors() -> None:
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        ws_url = gw.base.replace("http", "ws") + "/v1/realtime?model=gpt-realtime"
        for headers, status in (({}, 401), ({"Authorization": "Bearer nope"}, 401)):
            try:
                async with websockets.connect(ws_url, additional_headers=headers):
                    raise AssertionError("connected without credentials")
            except websockets.InvalidStatus as e:
                assert e.response.status_code == status
                assert json.loads(e.response.body)["error"]["code"]
        bad_model = ws_url.replace("gpt-realtime", "nope")
        try:
            async with websockets.connect(bad_model, additional_headers={
                    "Authorization": f"Bearer {API_KEY}"}):
                raise AssertionError("connected with an unknown model")
        except websockets.InvalidStatus as e:
            assert e.response.status_code == 400
        # Browser-style auth: the ek_ token as a subprotocol.
        token = await gw.mint()
        async with websockets.connect(ws_url.split("?")[0], subprotocols=[
                "realtime", f"openai-insecure-api-key.{token}"]) as ws:  # type: ignore[list-item]
            assert json.loads(await ws.recv())["type"] == "session.created"
