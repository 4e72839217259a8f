"""Barge-in, cancel and truncate: the agent stops, and remembers only what was heard."""

from __future__ import annotations

import base64

from gateway.localrt.config import EngineConfig

from .conftest import StartEngine
from .helpers import check_lifecycle, connect, session_body, silence, speech

#: Audio at real time after a 200 ms burst, as a caller would hear it: the response stays
#: active long enough to be interrupted.
PACED = EngineConfig(output_pace=1.0, output_lead_ms=200)


async def test_barge_in_cancels_and_truncate_cuts_the_transcript(start_engine: StartEngine
                                                                  ) -> None:
    url = await start_engine(PACED)
    async with connect(url) as probe:
        await probe.send({"type": "session.update", "session": session_body()})
        await probe.next("session.updated")
        await probe.send({"type": "response.create"})  # no input yet: the agent greets
        created = await probe.next("response.created")
        rid = created["response"]["id"]
        first = await probe.next("response.output_audio.delta")
        item_id = first["item_id"]

        await probe.append(speech("hello"))
        await probe.next("input_audio_buffer.speech_started")
        done = await probe.next("response.done", lambda e: e["response"]["id"] == rid)
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"] == {"type": "cancelled",
                                                      "reason": "turn_detected"}
        assert done["response"]["output"][0]["status"] == "incomplete"
        full = done["response"]["output"][0]["content"][0]["transcript"]

        heard_bytes = sum(len(base64.b64decode(e["delta"]))
                          for e in probe.of("response.output_audio.delta")
                          if e["item_id"] == item_id)
        heard_ms = heard_bytes // 48 // 2
        await probe.send({"type": "conversation.item.truncate", "item_id": item_id,
                          "content_index": 0, "audio_end_ms": heard_ms, "event_id": "t1"})
        truncated = await probe.next("conversation.item.truncated")
        assert truncated["audio_end_ms"] == heard_ms
        await probe.send({"type": "conversation.item.retrieve", "item_id": item_id})
        item = (await probe.next("conversation.item.retrieved"))["item"]
        cut = item["content"][0]["transcript"]
        assert len(cut.split()) < len(full.split()), (cut, full)
        assert full.startswith(cut)

        # Past the audio that exists: refused, and the session goes on.
        await probe.send({"type": "conversation.item.truncate", "item_id": item_id,
                          "content_index": 0, "audio_end_ms": 60_000, "event_id": "t2"})
        err = await probe.next("error")
        assert err["error"]["event_id"] == "t2"

        # The interrupting turn is answered normally.
        answer = await probe.next("response.done", lambda e: e["response"]["id"] != rid)
        assert answer["response"]["status"] == "completed"
    check_lifecycle(probe.events)


async def test_client_cancel_and_active_response_errors(start_engine: StartEngine) -> None:
    url = await start_engine(PACED)
    async with connect(url) as probe:
        await probe.send({"type": "session.update",
                          "session": session_body(turn_detection=None)})
        await probe.next("session.updated")
        await probe.send({"type": "response.cancel", "event_id": "c0"})
        err = await probe.next("error")
        assert (err["error"]["code"], err["error"]["event_id"]) == ("response_cancel_not_active",
                                                                    "c0")
        await probe.send({"type": "response.create"})
        await probe.next("response.output_audio.delta")
        await probe.send({"type": "response.create", "event_id": "c1"})
        err = await probe.next("error")
        assert err["error"]["code"] == "conversation_already_has_active_response"
        assert err["error"]["event_id"] == "c1"
        await probe.send({"type": "response.cancel"})
        done = await probe.next("response.done")
        assert done["response"]["status_details"]["reason"] == "client_cancelled"
    check_lifecycle(probe.events)


async def test_manual_turns_without_vad(engine_url: str) -> None:
    async with connect(engine_url) as probe:
        await probe.send({"type": "session.update",
                          "session": session_body(turn_detection=None)})
        await probe.next("session.updated")
        await probe.send({"type": "input_audio_buffer.commit", "event_id": "empty"})
        err = await probe.next("error")
        assert err["error"]["code"] == "input_audio_buffer_commit_empty"
        assert err["error"]["event_id"] == "empty"

        await probe.append(speech("lookup_phone", silence_ms=200), chunk_ms=40)
        await probe.send({"type": "input_audio_buffer.commit"})
        committed = await probe.next("input_audio_buffer.committed")
        heard = await probe.next("conversation.item.input_audio_transcription.completed")
        assert heard["item_id"] == committed["item_id"]
        assert "phone" in heard["transcript"]
        assert not probe.of("input_audio_buffer.speech_started")  # VAD is off
        assert not probe.of("response.created")  # and so is auto-response
        await probe.send({"type": "response.create"})
        args = await probe.next("response.function_call_arguments.done")
        assert args["name"] == "lookup_customer"
        assert args["arguments"] == '{"phone": "5551234"}'
        await probe.next("response.done")

        await probe.append(silence(300))
        await probe.send({"type": "input_audio_buffer.clear"})
        await probe.next("input_audio_buffer.cleared")
        await probe.send({"type": "input_audio_buffer.commit"})
        assert (await probe.next("error"))["error"]["code"] == "input_audio_buffer_commit_empty"
    check_lifecycle(probe.events)
