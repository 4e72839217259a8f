"""Dead microphone and idle caller, with a real client peer that goes silent."""

from __future__ import annotations

import asyncio
import json

import websockets

from gateway.api.appkeys import CALLS, METRICS
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import API_KEY, running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, silence, tone
from tests.waiting import until


def metric(gw: object, name: str, **labels: str) -> float:
    reg = gw.app[METRICS].registry  # type: ignore[attr-defined]
    v = reg.get_sample_value(name, labels)
    return float(v or 0.0)


async def test_dead_mic_is_reported_and_agent_asks() -> None:
    env = {"GATEWAY_GUARDS_DEAD_MIC_S": "0.6", "GATEWAY_GUARDS_IDLE_PROMPT_S": "30"}
    async with running_fake() as (fake, url), running_gateway(url, env=env) as gw:
        peer = ClientPeer(PcmSourceTrack(silence()))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls?gateway_events=true",
                               await gw.mint())
            ev = await peer.next_event("gateway.microphone.silent", timeout_s=5)
            assert ev["reason"] == "silence"
            assert metric(gw, "gateway_dead_mic_events_total", kind="silence") == 1
            await until(lambda: fake.created, 5, 'the gateway asked upstream for a response')
            assert fake.created[0]["response"]["metadata"] == {"gateway": "dead_mic"}
        finally:
            await peer.close()


async def test_live_mic_is_not_reported() -> None:
    env = {"GATEWAY_GUARDS_DEAD_MIC_S": "0.6", "GATEWAY_GUARDS_IDLE_PROMPT_S": "30"}
    async with running_fake() as (fake, url), running_gateway(url, env=env) as gw:
        peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls?gateway_events=true",
                               await gw.mint())
            await asyncio.sleep(1.5)
            assert not [e for e in peer.all_events if e["type"].startswith("gateway.microphone")]
            assert metric(gw, "gateway_dead_mic_events_total", kind="silence") == 0
        finally:
            await peer.close()


async def test_idle_caller_is_prompted_then_hung_up() -> None:
    env = {"GATEWAY_GUARDS_IDLE_PROMPT_S": "1.0", "GATEWAY_GUARDS_IDLE_HANGUP_S": "2.5",
           "GATEWAY_GUARDS_DEAD_MIC_S": "60"}
    async with running_fake() as (fake, url), running_gateway(url, env=env) as gw:
        peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls?gateway_events=true",
                               await gw.mint())
            await until(lambda: not gw.app[CALLS], 10, 'the call ended')
            purposes = [e["response"]["metadata"]["gateway"] for e in fake.created]
            assert purposes == ["idle_prompt", "idle_goodbye"]
            assert metric(gw, "gateway_calls_total", transport="webrtc",
                          outcome="idle_timeout") == 1
            # The goodbye was played to the caller before the call ended.
            stops = [e for e in peer.all_events if e["type"] == "output_audio_buffer.stopped"]
            assert len(stops) == 2
        finally:
            await peer.close()


async def test_a_websocket_program_sending_events_is_not_idle_nor_deaf() -> None:
    """A text-only or push-to-talk program on the WebSocket sends no audio for long spells:
    that is neither a dead microphone nor an idle caller while it keeps sending events."""
    env = {"GATEWAY_GUARDS_IDLE_PROMPT_S": "1.0", "GATEWAY_GUARDS_IDLE_HANGUP_S": "1.5",
           "GATEWAY_GUARDS_DEAD_MIC_S": "0.5"}
    async with running_fake() as (fake, url), running_gateway(url, env=env) as gw:
        ws_url = gw.base.replace("http", "ws") + "/v1/realtime?model=gpt-realtime"
        async with websockets.connect(ws_url, additional_headers={
                "Authorization": f"Bearer {API_KEY}"}) as ws:
            await ws.recv()
            for _ in range(8):  # 2.4 s of text turns, past every guard's period
                await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                    "type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": "still here"}]}}))
                await asyncio.sleep(0.3)
            assert gw.app[CALLS].get(next(iter(gw.app[CALLS])).call_id) is not None
            assert not [e for e in fake.conn.received if e["type"] == "response.create"]
