"""Dead microphone and idle caller, with a real client peer that goes silent."""

from __future__ import annotations

import asyncio

from gateway.api.appkeys import CALLS, METRICS
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import running_gateway
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
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
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
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
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
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
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
