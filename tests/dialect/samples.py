"""Representative events: every GA server event type and every beta client event type.

Each sample validates against its own dialect's SDK types (checked by the tests). The
shapes follow the protocol notes (§1.3-§1.12) and the SDK models.
"""

from __future__ import annotations

import itertools
from typing import Any

Json = dict[str, Any]

_ids = itertools.count(1)


def ev(type_: str, **fields: Any) -> Json:
    return {"type": type_, "event_id": f"event_{next(_ids):03d}", **fields}


RESP = "resp_001"
ITEM = "item_001"
SEG = {"response_id": RESP, "item_id": ITEM, "output_index": 0, "content_index": 0}

GET_WEATHER = {"type": "function", "name": "get_weather", "description": "Get weather",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                              "required": ["city"]}}

GA_SESSION: Json = {
    "type": "realtime", "object": "realtime.session", "id": "sess_001",
    "model": "gpt-realtime", "expires_at": 1_760_000_000,
    "output_modalities": ["audio"], "instructions": "Be brief.",
    "audio": {
        "input": {"format": {"type": "audio/pcm", "rate": 24000},
                  "transcription": {"model": "whisper-1", "language": "en"},
                  "noise_reduction": None,
                  "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                     "prefix_padding_ms": 300, "silence_duration_ms": 500,
                                     "create_response": True, "interrupt_response": True,
                                     "idle_timeout_ms": 6000}},
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin",
                   "speed": 1.0},
    },
    "tools": [GET_WEATHER], "tool_choice": "auto", "max_output_tokens": "inf",
    "tracing": None, "truncation": "auto",
}
GA_SESSION_PHONE: Json = {
    "type": "realtime", "object": "realtime.session", "id": "sess_002",
    "model": "local-engine", "output_modalities": ["text"],
    "audio": {"input": {"format": {"type": "audio/pcmu"},
                        "noise_reduction": {"type": "far_field", "strength": 0.5},
                        "turn_detection": {"type": "semantic_vad", "eagerness": "high"}},
              "output": {"format": {"type": "audio/pcma"}, "voice": {"id": "voice_abc"}}},
    "tools": [GET_WEATHER, {"type": "mcp", "server_label": "crm",
                            "server_url": "https://mcp.example.com"}],
    "tool_choice": {"type": "function", "name": "get_weather"},
    "include": ["item.input_audio_transcription.logprobs"],
}
GA_TRANSCRIPTION_SESSION: Json = {
    "type": "transcription", "object": "realtime.transcription_session", "id": "sess_003",
    "audio": {"input": {
        "format": {"type": "audio/pcmu"},
        "transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": "names",
                          "delay": "low"},
        "noise_reduction": {"type": "near_field"},
        "turn_detection": {"type": "server_vad", "threshold": 0.4, "prefix_padding_ms": 200,
                           "silence_duration_ms": 400}}},
    "include": ["item.input_audio_transcription.logprobs"],
}

USER_AUDIO_ITEM = {"id": "item_user", "object": "realtime.item", "type": "message",
                   "status": "completed", "role": "user",
                   "content": [{"type": "input_audio", "transcript": None}]}
USER_MIXED_ITEM = {"id": "item_mixed", "type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": "what is this?"},
                               {"type": "input_image", "image_url": "data:image/png;base64,AA",
                                "detail": "low"}]}
SYSTEM_ITEM = {"id": "item_sys", "type": "message", "role": "system",
               "content": [{"type": "input_text", "text": "Speak French."}]}
ASSISTANT_STARTED = {"id": ITEM, "object": "realtime.item", "type": "message",
                     "status": "in_progress", "role": "assistant", "content": []}
ASSISTANT_DONE = {"id": ITEM, "object": "realtime.item", "type": "message",
                  "status": "completed", "role": "assistant",
                  "content": [{"type": "output_audio", "transcript": "Hello there."}]}
ASSISTANT_TEXT = {"id": "item_text", "type": "message", "status": "completed",
                  "role": "assistant", "content": [{"type": "output_text", "text": "Hi."}]}
FUNCTION_CALL = {"id": "item_fc", "object": "realtime.item", "type": "function_call",
                 "status": "completed", "call_id": "call_1", "name": "get_weather",
                 "arguments": "{\"city\":\"Paris\"}"}
FUNCTION_OUTPUT = {"id": "item_fco", "type": "function_call_output", "call_id": "call_1",
                   "output": "{\"temp_c\":21}"}
MCP_CALL = {"id": "item_mcp", "type": "mcp_call", "server_label": "crm", "name": "lookup",
            "arguments": "{}", "output": "ok"}
MCP_LIST = {"id": "item_mcpl", "type": "mcp_list_tools", "server_label": "crm",
            "tools": [{"name": "lookup", "input_schema": {"type": "object"}}]}
MCP_APPROVAL_REQUEST = {"id": "item_mcpr", "type": "mcp_approval_request",
                        "server_label": "crm", "name": "lookup", "arguments": "{}"}
MCP_APPROVAL_RESPONSE = {"id": "item_mcpa", "type": "mcp_approval_response",
                         "approval_request_id": "item_mcpr", "approve": True}

USAGE = {"total_tokens": 120, "input_tokens": 80, "output_tokens": 40,
         "input_token_details": {"text_tokens": 20, "audio_tokens": 60, "image_tokens": 0,
                                 "cached_tokens": 10,
                                 "cached_tokens_details": {"text_tokens": 10,
                                                           "audio_tokens": 0,
                                                           "image_tokens": 0}},
         "output_token_details": {"text_tokens": 10, "audio_tokens": 30}}
RESPONSE_STARTED = {"id": RESP, "object": "realtime.response", "conversation_id": "conv_1",
                    "status": "in_progress", "status_details": None, "output": [],
                    "output_modalities": ["audio"],
                    "audio": {"output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}},
                    "max_output_tokens": "inf", "metadata": None, "usage": None}
RESPONSE_DONE = {**RESPONSE_STARTED, "status": "completed",
                 "output": [ASSISTANT_DONE, FUNCTION_CALL, MCP_CALL], "usage": USAGE,
                 "metadata": {"topic": "weather"}}
RESPONSE_CANCELLED = {"id": "resp_002", "object": "realtime.response", "status": "cancelled",
                      "status_details": {"type": "cancelled", "reason": "turn_detected"},
                      "output": [], "output_modalities": ["text"]}
RESPONSE_FAILED = {"id": "resp_003", "object": "realtime.response", "status": "failed",
                   "status_details": {"type": "failed",
                                      "error": {"type": "server_error", "code": "boom",
                                                "message": "upstream fell over"}}}

LOGPROBS = [{"token": "hi", "bytes": [104, 105], "logprob": -0.1}]

#: (sample id, GA server event). Every GA server event type appears at least once.
GA_SERVER_SAMPLES: list[tuple[str, Json]] = [
    ("error", ev("error", error={"type": "invalid_request_error", "code": "invalid_value",
                                  "message": "bad format",
                                  "param": "session.audio.input.format",
                                  "event_id": "client_1"})),
    ("session.created", ev("session.created", session=GA_SESSION)),
    ("session.created/phone", ev("session.created", session=GA_SESSION_PHONE)),
    ("session.created/transcription",
     ev("session.created", session=GA_TRANSCRIPTION_SESSION)),
    ("session.updated", ev("session.updated", session=GA_SESSION)),
    ("session.updated/transcription",
     ev("session.updated", session=GA_TRANSCRIPTION_SESSION)),
    ("conversation.created", ev("conversation.created",
                                conversation={"id": "conv_1",
                                              "object": "realtime.conversation"})),
    ("conversation.item.created", ev("conversation.item.created", item=SYSTEM_ITEM,
                                     previous_item_id=None)),
    ("conversation.item.added/user", ev("conversation.item.added", item=USER_AUDIO_ITEM,
                                        previous_item_id="item_sys")),
    ("conversation.item.added/assistant", ev("conversation.item.added",
                                             item=ASSISTANT_STARTED,
                                             previous_item_id="item_user")),
    ("conversation.item.added/image", ev("conversation.item.added", item=USER_MIXED_ITEM)),
    ("conversation.item.added/function_call_output",
     ev("conversation.item.added", item=FUNCTION_OUTPUT)),
    ("conversation.item.added/mcp", ev("conversation.item.added", item=MCP_LIST)),
    ("conversation.item.done", ev("conversation.item.done", item=ASSISTANT_DONE,
                                  previous_item_id="item_user")),
    ("conversation.item.retrieved", ev("conversation.item.retrieved",
                                       item={**ASSISTANT_DONE,
                                             "content": [{"type": "output_audio",
                                                          "audio": "AAAA",
                                                          "transcript": "Hello there."}]})),
    ("conversation.item.retrieved/mcp", ev("conversation.item.retrieved",
                                           item=MCP_APPROVAL_RESPONSE)),
    ("conversation.item.deleted", ev("conversation.item.deleted", item_id=ITEM)),
    ("conversation.item.truncated", ev("conversation.item.truncated", item_id=ITEM,
                                       content_index=0, audio_end_ms=1500)),
    ("transcription.completed", ev(
        "conversation.item.input_audio_transcription.completed", item_id="item_user",
        content_index=0, transcript="hi", logprobs=LOGPROBS, languages=[{"code": "en"}],
        usage={"type": "tokens", "input_tokens": 5, "output_tokens": 2, "total_tokens": 7,
               "input_token_details": {"audio_tokens": 5, "text_tokens": 0}})),
    ("transcription.completed/duration", ev(
        "conversation.item.input_audio_transcription.completed", item_id="item_user",
        content_index=0, transcript="hi", usage={"type": "duration", "seconds": 1.5})),
    ("transcription.delta", ev("conversation.item.input_audio_transcription.delta",
                               item_id="item_user", content_index=0, delta="h",
                               logprobs=LOGPROBS)),
    ("transcription.failed", ev("conversation.item.input_audio_transcription.failed",
                                item_id="item_user", content_index=0,
                                error={"type": "server_error", "code": "x", "message": "m",
                                       "param": None})),
    ("transcription.segment", ev("conversation.item.input_audio_transcription.segment",
                                 id="seg_1", item_id="item_user", content_index=0,
                                 start=0.0, end=1.2, speaker="A", text="hi")),
    ("input_audio_buffer.cleared", ev("input_audio_buffer.cleared")),
    ("input_audio_buffer.committed", ev("input_audio_buffer.committed", item_id="item_user",
                                        previous_item_id="item_sys")),
    ("input_audio_buffer.speech_started", ev("input_audio_buffer.speech_started",
                                             item_id="item_user", audio_start_ms=1000)),
    ("input_audio_buffer.speech_stopped", ev("input_audio_buffer.speech_stopped",
                                             item_id="item_user", audio_end_ms=2500)),
    ("input_audio_buffer.timeout_triggered", ev("input_audio_buffer.timeout_triggered",
                                                item_id="item_user", audio_start_ms=0,
                                                audio_end_ms=6000)),
    ("input_audio_buffer.dtmf_event_received", {"type": "input_audio_buffer.dtmf_event_received",
                                                "event": "5", "received_at": 1_760_000_001}),
    ("rate_limits.updated", ev("rate_limits.updated", rate_limits=[
        {"name": "requests", "limit": 100, "remaining": 99, "reset_seconds": 1.0},
        {"name": "tokens", "limit": 1000, "remaining": 900, "reset_seconds": 2.5}])),
    ("response.created", ev("response.created", response=RESPONSE_STARTED)),
    ("response.done", ev("response.done", response=RESPONSE_DONE)),
    ("response.done/cancelled", ev("response.done", response=RESPONSE_CANCELLED)),
    ("response.done/failed", ev("response.done", response=RESPONSE_FAILED)),
    ("response.output_item.added", ev("response.output_item.added", response_id=RESP,
                                      output_index=0, item=ASSISTANT_STARTED)),
    ("response.output_item.added/function_call", ev(
        "response.output_item.added", response_id=RESP, output_index=1,
        item={**FUNCTION_CALL, "status": "in_progress", "arguments": ""})),
    ("response.output_item.added/mcp", ev("response.output_item.added", response_id=RESP,
                                          output_index=2, item=MCP_APPROVAL_REQUEST)),
    ("response.output_item.done", ev("response.output_item.done", response_id=RESP,
                                     output_index=0, item=ASSISTANT_DONE)),
    ("response.output_item.done/text", ev("response.output_item.done", response_id=RESP,
                                          output_index=0, item=ASSISTANT_TEXT)),
    ("response.content_part.added", ev("response.content_part.added", **SEG,
                                       part={"type": "audio", "transcript": ""})),
    ("response.content_part.done", ev("response.content_part.done", **SEG,
                                      part={"type": "text", "text": "Hi."})),
    ("response.output_audio.delta", ev("response.output_audio.delta", **SEG, delta="AAAA")),
    ("response.output_audio.done", ev("response.output_audio.done", **SEG)),
    ("response.output_audio_transcript.delta", ev("response.output_audio_transcript.delta",
                                                  **SEG, delta="Hel")),
    ("response.output_audio_transcript.done", ev("response.output_audio_transcript.done",
                                                 **SEG, transcript="Hello there.")),
    ("response.output_text.delta", ev("response.output_text.delta", **SEG, delta="H")),
    ("response.output_text.done", ev("response.output_text.done", **SEG, text="Hi.")),
    ("response.function_call_arguments.delta", ev(
        "response.function_call_arguments.delta", response_id=RESP, item_id="item_fc",
        output_index=1, call_id="call_1", delta="{\"ci")),
    ("response.function_call_arguments.done", ev(
        "response.function_call_arguments.done", response_id=RESP, item_id="item_fc",
        output_index=1, call_id="call_1", name="get_weather",
        arguments="{\"city\":\"Paris\"}")),
    ("output_audio_buffer.started", ev("output_audio_buffer.started", response_id=RESP)),
    ("output_audio_buffer.stopped", ev("output_audio_buffer.stopped", response_id=RESP)),
    ("output_audio_buffer.cleared", ev("output_audio_buffer.cleared", response_id=RESP)),
    ("mcp_list_tools.in_progress", ev("mcp_list_tools.in_progress", item_id="item_mcpl")),
    ("mcp_list_tools.completed", ev("mcp_list_tools.completed", item_id="item_mcpl")),
    ("mcp_list_tools.failed", ev("mcp_list_tools.failed", item_id="item_mcpl")),
    ("response.mcp_call_arguments.delta", ev("response.mcp_call_arguments.delta",
                                             response_id=RESP, item_id="item_mcp",
                                             output_index=2, delta="{", obfuscation="x")),
    ("response.mcp_call_arguments.done", ev("response.mcp_call_arguments.done",
                                            response_id=RESP, item_id="item_mcp",
                                            output_index=2, arguments="{}")),
    ("response.mcp_call.in_progress", ev("response.mcp_call.in_progress", item_id="item_mcp",
                                         output_index=2)),
    ("response.mcp_call.completed", ev("response.mcp_call.completed", item_id="item_mcp",
                                       output_index=2)),
    ("response.mcp_call.failed", ev("response.mcp_call.failed", item_id="item_mcp",
                                    output_index=2)),
]

#: GA server type -> the beta types it becomes (empty: dropped for beta clients).
EXPECTED_BETA_TYPES: dict[str, tuple[str, ...]] = {
    "response.output_audio.delta": ("response.audio.delta",),
    "response.output_audio.done": ("response.audio.done",),
    "response.output_audio_transcript.delta": ("response.audio_transcript.delta",),
    "response.output_audio_transcript.done": ("response.audio_transcript.done",),
    "response.output_text.delta": ("response.text.delta",),
    "response.output_text.done": ("response.text.done",),
    "conversation.item.added": ("conversation.item.created",),
    "conversation.item.done": (),
    "input_audio_buffer.timeout_triggered": (),
    "input_audio_buffer.dtmf_event_received": (),
    "conversation.item.input_audio_transcription.segment": (),
    "mcp_list_tools.in_progress": (), "mcp_list_tools.completed": (),
    "mcp_list_tools.failed": (), "response.mcp_call_arguments.delta": (),
    "response.mcp_call_arguments.done": (), "response.mcp_call.in_progress": (),
    "response.mcp_call.completed": (), "response.mcp_call.failed": (),
}
#: Samples whose single GA event is dropped although its type usually maps (MCP items).
DROPPED_SAMPLES = frozenset({"conversation.item.added/mcp", "conversation.item.retrieved/mcp",
                             "response.output_item.added/mcp"})
#: Samples whose output type depends on the session type.
TRANSCRIPTION_SAMPLES = {"session.created/transcription": "transcription_session.created",
                         "session.updated/transcription": "transcription_session.updated"}


BETA_SESSION: Json = {
    "modalities": ["text", "audio"], "instructions": "You are a helpful agent.",
    "voice": "alloy", "input_audio_format": "g711_ulaw", "output_audio_format": "g711_ulaw",
    "input_audio_transcription": {"model": "whisper-1"},
    "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                       "silence_duration_ms": 500, "create_response": True,
                       "interrupt_response": True},
    "tools": [GET_WEATHER], "tool_choice": "auto", "temperature": 0.8,
    "max_response_output_tokens": "inf",
}
#: What the openai-realtime-api-beta JS client sends on connect: every field, nulls included.
BETA_SESSION_JS_DEFAULTS: Json = {
    "modalities": ["text", "audio"], "instructions": "", "voice": "verse",
    "input_audio_format": "pcm16", "output_audio_format": "pcm16",
    "input_audio_transcription": None, "turn_detection": None, "tools": [],
    "tool_choice": "auto", "temperature": 0.8, "max_response_output_tokens": 4096,
}
BETA_SESSION_FULL: Json = {
    "model": "gpt-4o-realtime-preview-2024-12-17", "modalities": ["text"],
    "instructions": "Be terse.", "voice": "ash", "speed": 1.2,
    "input_audio_format": "pcm16", "output_audio_format": "g711_alaw",
    "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "de",
                                  "prompt": "Namen"},
    "input_audio_noise_reduction": {"type": "far_field"},
    "turn_detection": {"type": "semantic_vad", "eagerness": "low", "create_response": False,
                       "interrupt_response": False},
    "tools": [GET_WEATHER], "tool_choice": "required", "max_response_output_tokens": 512,
    "tracing": {"workflow_name": "support", "group_id": "g1", "metadata": {"k": "v"}},
}
BETA_TRANSCRIPTION_SESSION: Json = {
    "input_audio_format": "g711_ulaw",
    "input_audio_transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
    "input_audio_noise_reduction": {"type": "near_field"},
    "turn_detection": {"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 300},
    "include": ["item.input_audio_transcription.logprobs"],
}


def cev(type_: str, **fields: Any) -> Json:
    return {"type": type_, "event_id": f"client_{next(_ids):03d}", **fields}


#: (sample id, beta client event). Every beta client event type appears at least once.
BETA_CLIENT_SAMPLES: list[tuple[str, Json]] = [
    ("session.update", cev("session.update", session=BETA_SESSION)),
    ("session.update/js-defaults", cev("session.update", session=BETA_SESSION_JS_DEFAULTS)),
    ("session.update/full", cev("session.update", session=BETA_SESSION_FULL)),
    ("session.update/empty", {"type": "session.update", "session": {}}),
    ("transcription_session.update", cev("transcription_session.update",
                                         session=BETA_TRANSCRIPTION_SESSION)),
    ("input_audio_buffer.append", cev("input_audio_buffer.append", audio="AAAAAAAA")),
    ("input_audio_buffer.commit", cev("input_audio_buffer.commit")),
    ("input_audio_buffer.clear", {"type": "input_audio_buffer.clear"}),
    ("output_audio_buffer.clear", cev("output_audio_buffer.clear")),
    ("conversation.item.create/user-text", cev(
        "conversation.item.create", previous_item_id="root",
        item={"type": "message", "role": "user",
              "content": [{"type": "input_text", "text": "Hello"}]})),
    ("conversation.item.create/user-audio", cev(
        "conversation.item.create",
        item={"id": "item_c1", "type": "message", "role": "user", "status": "completed",
              "content": [{"type": "input_audio", "audio": "AAAA", "transcript": "hi"}]})),
    ("conversation.item.create/system", cev(
        "conversation.item.create",
        item={"type": "message", "role": "system",
              "content": [{"type": "input_text", "text": "Speak French."}]})),
    ("conversation.item.create/assistant", cev(
        "conversation.item.create",
        item={"type": "message", "role": "assistant", "object": "realtime.item",
              "content": [{"type": "text", "text": "Earlier answer."}]})),
    ("conversation.item.create/function_call", cev(
        "conversation.item.create",
        item={"type": "function_call", "call_id": "call_9", "name": "get_weather",
              "arguments": "{}"})),
    ("conversation.item.create/function_call_output", cev(
        "conversation.item.create",
        item={"type": "function_call_output", "call_id": "call_1",
              "output": "{\"temp_c\":21}"})),
    ("conversation.item.retrieve", cev("conversation.item.retrieve", item_id=ITEM)),
    ("conversation.item.delete", cev("conversation.item.delete", item_id=ITEM)),
    ("conversation.item.truncate", cev("conversation.item.truncate", item_id=ITEM,
                                       content_index=0, audio_end_ms=1500)),
    ("response.create/bare", {"type": "response.create"}),
    ("response.create/params", cev("response.create", response={
        "modalities": ["text", "audio"], "instructions": "Answer in one sentence.",
        "voice": "sage", "output_audio_format": "pcm16", "temperature": 0.7,
        "max_response_output_tokens": 200, "tool_choice": "none", "tools": [GET_WEATHER],
        "conversation": "auto", "metadata": {"topic": "weather"}})),
    ("response.create/out-of-band", cev("response.create", response={
        "conversation": "none", "modalities": ["text"], "metadata": {"kind": "summary"},
        "input": [
            {"type": "item_reference", "id": "item_user"},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "Summarise that."}]},
            {"type": "message", "role": "user",
             "content": [{"type": "item_reference", "id": "item_c1"},
                         {"type": "input_text", "text": "and this"}]},
        ]})),
    ("response.cancel", cev("response.cancel")),
    ("response.cancel/id", cev("response.cancel", response_id=RESP)),
]

#: Beta client type -> the GA types it becomes.
EXPECTED_GA_TYPES: dict[str, tuple[str, ...]] = {
    "transcription_session.update": ("session.update",),
}
