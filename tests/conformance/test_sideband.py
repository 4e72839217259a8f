"""OpenAI's "server-side controls": ``client.realtime.connect(call_id=…)`` from the official
Python SDK attaches a server program to a live WebRTC call (a real aiortc peer) through the
gateway: it hears the call's events, configures it, answers its tool call, starts a response.
An invented call id is an error, never a new session."""

from __future__ import annotations

import json

import pytest
import websockets

from tests.conformance.sdk_client import (
    APP_INSTRUCTIONS,
    CLIENT_CONFIRMATION,
    SCHEDULE_TOOL,
    Events,
    answer_tool_call,
    sdk,
)
from tests.conformance.support import check_events
from tests.gateway_fixtures import running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, from_pcm
from tests.test_e2e_local_engine import speech48

ENV = {"OPENAI_API_KEY": ""}


async def test_sideband_attaches_to_a_live_webrtc_call(local_engine_url: str) -> None:
    # The caller's words start after 6 s of silence: time for the server program to attach.
    peer = ClientPeer(PcmSourceTrack(from_pcm(speech48("schedule", lead_s=6.0))))
    async with running_gateway(local_engine_url, env=ENV) as gw:
        client = sdk(gw)
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            await peer.next_event("session.created")
            assert peer.location is not None
            call_id = peer.location.rsplit("/", 1)[-1]
            async with client.realtime.connect(call_id=call_id) as conn:
                ev = Events(conn)
                try:
                    await conn.session.update(session={
                        "type": "realtime", "instructions": APP_INSTRUCTIONS,
                        "tools": [SCHEDULE_TOOL]})
                    updated = await ev.next("session.updated", 10)
                    assert updated["session"]["instructions"] == APP_INSTRUCTIONS
                    # The caller's speech is the call's: the sideband hears it.
                    said = await ev.next(
                        "conversation.item.input_audio_transcription.completed", 25)
                    assert "appointment" in said["transcript"].lower()
                    call = await ev.next("response.function_call_arguments.done", 20)
                    assert call["name"] == "schedule_appointment"
                    await ev.next("response.done")
                    args = json.loads(call["arguments"])
                    await answer_tool_call(conn, call, {
                        "status": "booked", "date": args.get("date", ""),
                        "time": args.get("time", ""), "confirmation": CLIENT_CONFIRMATION})
                    # The caller hears the sideband's answer.
                    for _ in range(6):
                        done = await peer.next_event("response.output_audio_transcript.done",
                                                     20)
                        if CLIENT_CONFIRMATION in done["transcript"]:
                            break
                    else:
                        raise AssertionError("the caller never heard the sideband's output")
                    await ev.next("response.done", 20)
                    await conn.response.create(response={
                        "instructions": 'Say "The sideband speaks."'})
                    for _ in range(6):
                        done = await peer.next_event("response.output_audio_transcript.done",
                                                     20)
                        if "sideband speaks" in done["transcript"].lower():
                            break
                    else:
                        raise AssertionError("the sideband's response.create was not spoken")
                    check_events(ev.all, "ga")
                    check_events(peer.all_events, "ga")
                finally:
                    await ev.close()
        finally:
            await peer.close()
            await client.close()


async def test_sideband_with_an_invented_call_id_is_an_error(local_engine_url: str) -> None:
    async with running_gateway(local_engine_url, env=ENV) as gw:
        client = sdk(gw)
        try:
            with pytest.raises(websockets.exceptions.InvalidStatus) as raised:
                async with client.realtime.connect(call_id="rtc_invented0000000000") as conn:
                    first = json.loads(await conn.recv_bytes())
                    pytest.fail(f"an invented call id opened a session: {first.get('type')}")
            response = raised.value.response
            assert response.status_code in (400, 404), response.status_code
            body = json.loads(response.body or b"{}")
            assert set(body["error"]) >= {"type", "code", "message", "param"}, body
        finally:
            await client.close()
