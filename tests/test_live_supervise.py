"""A supervisor takes a GPT-Live call over (the real local engine behind the gateway): the
model's input is muted, its speech held back, the caller hears the supervisor; on hand back the
model is unmuted and told what happened, and answers the caller's next turn."""

from __future__ import annotations

import time
from typing import Any, cast

from gateway.api.appkeys import CALLS
from gateway.call.session import CallSession
from tests.oracle import validate_live_server_event
from tests.peers import ClientPeer, PcmSourceTrack, tone
from tests.test_e2e_local_engine import speech48
from tests.test_live_gateway import gateway, live_webrtc
from tests.test_supervise import AUTH, ListenerPeer, amplitude
from tests.test_upstream_recovery import Feed
from tests.waiting import until


def _count(peer: ClientPeer, etype: str) -> int:
    return sum(e["type"] == etype for e in peer.all_events)


async def test_takeover_mutes_the_live_model_and_handback_resumes(local_engine_url: str
                                                                   ) -> None:
    async with gateway(local_engine_url) as gw:
        mic = Feed()
        caller = ClientPeer(PcmSourceTrack(mic))
        sup = ListenerPeer(PcmSourceTrack(tone(700.0, -20.0)))
        try:
            body, _ = await live_webrtc(gw, caller)
            await caller.next_event("session.started", 15)
            call_id = body["session"]["id"]
            call = cast(CallSession, gw.app[CALLS].get(call_id))
            # Every upstream event, before the room (or a takeover's gate) sees it.
            upstream: list[dict[str, Any]] = []
            call.hooks.upstream_gate.insert(0, lambda ev: upstream.append(ev) is None)

            def seen(etype: str) -> bool:
                return any(e["type"] == etype for e in upstream)

            mic.say(speech48("hello", lead_s=0.5, tail_s=1.0))
            await caller.next_event("session.input_transcript.delta", 30)
            await until(lambda: call.stats.agent_audio_ms > 200, 30, "the agent answering")

            await sup.connect(gw, call_id, path="takeover")
            t_over = time.monotonic()
            await until(lambda: seen("session.input_audio.muted"), 10, "the model muted")
            heard_before = _count(caller, "session.input_transcript.delta")
            said_before = _count(caller, "session.output_transcript.delta")
            # The caller talks to the supervisor: the model hears silence, says nothing.
            mic.say(speech48("help", lead_s=0.3, tail_s=1.5))
            await until(lambda: time.monotonic() - t_over > 4.0, 10, "the takeover going on")
            heard = caller.received_audio(since=time.monotonic() - 1.0)
            assert amplitude(heard, 700) > 3000, "the caller does not hear the supervisor"
            assert _count(caller, "session.input_transcript.delta") == heard_before
            assert _count(caller, "session.output_transcript.delta") == said_before

            async with gw.http.post(f"{gw.base}/admin/calls/{call_id}/handback",
                                    headers=AUTH) as r:
                summary = await r.json()
                assert r.status == 200, summary
            await until(lambda: seen("session.input_audio.unmuted")
                        and seen("session.instructions.appended"), 10, "the model resumed")
            assert not [e for e in upstream if e["type"] == "error"], upstream
            mic.say(speech48("hello", lead_s=0.3, tail_s=1.5))
            await until(lambda: _count(caller, "session.input_transcript.delta") > heard_before,
                        30, "the caller heard by the model again")
            await until(lambda: _count(caller, "session.output_transcript.delta") > said_before,
                        30, "the model answering again")
        finally:
            await sup.close()
            await caller.close()
        # The gateway's own mute commands and their acks never reach the client.
        types = {e["type"] for e in caller.all_events}
        assert not types & {"session.input_audio.muted", "session.input_audio.unmuted",
                            "session.instructions.appended"}
        for ev in caller.all_events:
            validate_live_server_event(ev)
