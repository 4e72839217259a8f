"""Two-way translation between the retired beta Realtime dialect and GA.

The gateway always speaks GA upstream. A beta-era client (``OpenAI-Beta: realtime=v1``)
keeps its dialect: :func:`client_event_beta_to_ga` turns each of its events into GA events
before policy and upstream, and :func:`server_event_ga_to_beta` turns each GA server event
into what a beta client expects. Both look the event ``type`` up in a dispatch table.
The mapping tables and the choices for events without a counterpart are in
``docs/dialects.md``.

Pure code: no I/O, no asyncio. Inputs are never mutated. Server-side outputs may share
unchanged nested values (strings, usage objects) with their input; client-side outputs
deep-copy the containers they pass through, so policy code may edit them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .dialect_checks import (
    DialectError,
    ErrorCode,
    Json,
    check_kind,
    expect_str,
    reject_unknown,
    require,
)
from .dialect_items import (
    content_ga_to_beta,
    item_beta_to_ga,
    item_ga_to_beta,
    response_ga_to_beta,
    response_params_beta_to_ga,
)
from .dialect_session import (
    beta_session_create_request_to_ga,
    ga_client_secret_to_beta_session_response,
    session_beta_to_ga,
    session_ga_to_beta,
    transcription_session_beta_to_ga,
)

Handler = Callable[[Json], list[Json]]


def _envelope(ga_type: str, event: Json, **fields: Any) -> Json:
    out: Json = {"type": ga_type}
    if event.get("event_id") is not None:
        out["event_id"] = event["event_id"]
    out.update(fields)
    return out


# -- client events: beta -> GA ---------------------------------------------------------

def _plain(*fields: tuple[str, str, bool]) -> Handler:
    """An event whose name and fields are the same in both dialects: check and copy.

    ``fields`` are (name, kind, required). Used for the audio appends too, so it stays
    a shallow copy: the base64 payload is shared, never re-encoded.
    """
    allowed = ("type", "event_id", *(name for name, _, _ in fields))

    def handle(event: Json) -> list[Json]:
        reject_unknown(event, allowed, "")
        for name, kind, required in fields:
            value = require(event, name, "") if required else event.get(name)
            if value is not None:
                check_kind(value, kind, name)
        return [dict(event)]
    return handle


def _session_update(event: Json) -> list[Json]:
    reject_unknown(event, ("type", "event_id", "session"), "")
    session, _ignored = session_beta_to_ga(require(event, "session", ""))
    return [_envelope("session.update", event, session=session)]


def _transcription_session_update(event: Json) -> list[Json]:
    reject_unknown(event, ("type", "event_id", "session"), "")
    session, _ignored = transcription_session_beta_to_ga(require(event, "session", ""))
    return [_envelope("session.update", event, session=session)]


def _item_create(event: Json) -> list[Json]:
    reject_unknown(event, ("type", "event_id", "item", "previous_item_id"), "")
    (item,) = item_beta_to_ga(require(event, "item", ""), "item")
    out = _envelope("conversation.item.create", event)
    if event.get("previous_item_id") is not None:
        out["previous_item_id"] = expect_str(event["previous_item_id"], "previous_item_id")
    out["item"] = item
    return [out]


def _response_create(event: Json) -> list[Json]:
    reject_unknown(event, ("type", "event_id", "response"), "")
    out = _envelope("response.create", event)
    if event.get("response") is not None:
        out["response"], _ignored = response_params_beta_to_ga(event["response"])
    return [out]


_CLIENT_HANDLERS: Mapping[str, Handler] = {
    "session.update": _session_update,
    "transcription_session.update": _transcription_session_update,
    "input_audio_buffer.append": _plain(("audio", "str", True)),
    "input_audio_buffer.commit": _plain(),
    "input_audio_buffer.clear": _plain(),
    "output_audio_buffer.clear": _plain(),
    "conversation.item.create": _item_create,
    "conversation.item.retrieve": _plain(("item_id", "str", True)),
    "conversation.item.delete": _plain(("item_id", "str", True)),
    "conversation.item.truncate": _plain(("item_id", "str", True), ("content_index", "int", True),
                                         ("audio_end_ms", "int", True)),
    "response.create": _response_create,
    "response.cancel": _plain(("response_id", "str", False)),
}
#: Every client event type a beta connection may send.
BETA_CLIENT_EVENT_TYPES = frozenset(_CLIENT_HANDLERS)


def client_event_beta_to_ga(event: Json) -> list[Json]:
    """One beta client event -> the GA client events to send on (zero or more).

    Raises :class:`DialectError` for malformed events, unknown event types, unknown fields
    and GA-only fields; the caller answers with an ``error`` event in the beta dialect
    (``DialectError.error_object``) and the session goes on.
    """
    if not isinstance(event, dict):
        raise DialectError(ErrorCode.INVALID_TYPE, "A client event must be a JSON object.")
    etype = require(event, "type", "")
    if not isinstance(etype, str):
        raise DialectError(ErrorCode.INVALID_TYPE, "Invalid type for 'type': expected a string.",
                           "type")
    handler = _CLIENT_HANDLERS.get(etype)
    if handler is None:
        raise DialectError(
            ErrorCode.INVALID_VALUE,
            f"Invalid value: '{etype}'. This connection speaks the beta Realtime dialect; "
            f"supported client events are: {', '.join(sorted(_CLIENT_HANDLERS))}.", "type")
    if event.get("event_id") is not None:
        expect_str(event["event_id"], "event_id")
    return handler(event)


# -- server events: GA -> beta ---------------------------------------------------------

def _keep(beta_type: str, *keys: str) -> Handler:
    """Rename to ``beta_type`` and keep only the fields the beta event has."""
    def handle(event: Json) -> list[Json]:
        out: Json = {"type": beta_type}
        for key in keys:
            if key in event:
                out[key] = event[key]
        return [out]
    return handle


def _drop(event: Json) -> list[Json]:
    return []


def _session_event(beta_type: str, beta_transcription_type: str) -> Handler:
    def handle(event: Json) -> list[Json]:
        session = event.get("session")
        if not isinstance(session, dict):
            return []
        transcription = session.get("type") == "transcription"
        return [_envelope(beta_transcription_type if transcription else beta_type, event,
                          session=session_ga_to_beta(session))]
    return handle


def _item_event(beta_type: str, *keys: str) -> Handler:
    """An event carrying a conversation item; MCP items have no beta form (dropped)."""
    def handle(event: Json) -> list[Json]:
        item = item_ga_to_beta(event.get("item"))
        if item is None:
            return []
        out: Json = {"type": beta_type}
        out.update({k: event[k] for k in keys if k in event})
        out["item"] = item
        return [out]
    return handle


def _response_event(beta_type: str) -> Handler:
    def handle(event: Json) -> list[Json]:
        return [_envelope(beta_type, event, response=response_ga_to_beta(event.get("response")))]
    return handle


_PART_KEYS = ("event_id", "response_id", "item_id", "output_index", "content_index")


def _content_part_event(beta_type: str) -> Handler:
    def handle(event: Json) -> list[Json]:
        part = content_ga_to_beta(event.get("part"))
        if part is None:
            return []
        out: Json = {"type": beta_type}
        out.update({k: event[k] for k in _PART_KEYS if k in event})
        out["part"] = part
        return [out]
    return handle


#: GA error params that name GA field paths, and their beta spelling.
_PARAM_GA_TO_BETA: tuple[tuple[str, str], ...] = (
    ("session.audio.input.format", "session.input_audio_format"),
    ("session.audio.input.transcription", "session.input_audio_transcription"),
    ("session.audio.input.noise_reduction", "session.input_audio_noise_reduction"),
    ("session.audio.input.turn_detection", "session.turn_detection"),
    ("session.audio.output.format", "session.output_audio_format"),
    ("session.audio.output.voice", "session.voice"),
    ("session.audio.output.speed", "session.speed"),
    ("session.output_modalities", "session.modalities"),
    ("session.max_output_tokens", "session.max_response_output_tokens"),
    ("response.audio.output.format", "response.output_audio_format"),
    ("response.audio.output.voice", "response.voice"),
    ("response.output_modalities", "response.modalities"),
    ("response.max_output_tokens", "response.max_response_output_tokens"),
)


def ga_param_to_beta(param: str) -> str:
    """Rewrite a GA error ``param`` path into the beta field a beta client sent."""
    for ga, beta in _PARAM_GA_TO_BETA:
        if param == ga or param.startswith((ga + ".", ga + "[")):
            return beta + param[len(ga):]
    return param


def _error(event: Json) -> list[Json]:
    error = event.get("error")
    if isinstance(error, dict) and isinstance(error.get("param"), str):
        error = {**error, "param": ga_param_to_beta(error["param"])}
    return [_envelope("error", event, error=error)]


_DELTA = (*_PART_KEYS, "delta")

_SERVER_HANDLERS: Mapping[str, Handler] = {
    "error": _error,
    "session.created": _session_event("session.created", "transcription_session.created"),
    "session.updated": _session_event("session.updated", "transcription_session.updated"),
    "conversation.created": _keep("conversation.created", "event_id", "conversation"),
    # GA splits beta's single "created" into added (the item starts) and done (it is
    # final). Beta clients want one created per item, at the time added arrives.
    "conversation.item.added": _item_event("conversation.item.created", "event_id",
                                           "previous_item_id"),
    "conversation.item.created": _item_event("conversation.item.created", "event_id",
                                             "previous_item_id"),
    "conversation.item.done": _drop,
    "conversation.item.retrieved": _item_event("conversation.item.retrieved", "event_id"),
    "conversation.item.deleted": _keep("conversation.item.deleted", "event_id", "item_id"),
    "conversation.item.truncated": _keep("conversation.item.truncated", "event_id", "item_id",
                                         "content_index", "audio_end_ms"),
    "conversation.item.input_audio_transcription.completed": _keep(
        "conversation.item.input_audio_transcription.completed", "event_id", "item_id",
        "content_index", "transcript", "usage", "logprobs"),
    "conversation.item.input_audio_transcription.delta": _keep(
        "conversation.item.input_audio_transcription.delta", "event_id", "item_id",
        "content_index", "delta", "logprobs"),
    "conversation.item.input_audio_transcription.failed": _keep(
        "conversation.item.input_audio_transcription.failed", "event_id", "item_id",
        "content_index", "error"),
    "input_audio_buffer.cleared": _keep("input_audio_buffer.cleared", "event_id"),
    "input_audio_buffer.committed": _keep("input_audio_buffer.committed", "event_id",
                                          "item_id", "previous_item_id"),
    "input_audio_buffer.speech_started": _keep("input_audio_buffer.speech_started", "event_id",
                                               "item_id", "audio_start_ms"),
    "input_audio_buffer.speech_stopped": _keep("input_audio_buffer.speech_stopped", "event_id",
                                               "item_id", "audio_end_ms"),
    "rate_limits.updated": _keep("rate_limits.updated", "event_id", "rate_limits"),
    "response.created": _response_event("response.created"),
    "response.done": _response_event("response.done"),
    "response.output_item.added": _item_event("response.output_item.added", "event_id",
                                              "response_id", "output_index"),
    "response.output_item.done": _item_event("response.output_item.done", "event_id",
                                             "response_id", "output_index"),
    "response.content_part.added": _content_part_event("response.content_part.added"),
    "response.content_part.done": _content_part_event("response.content_part.done"),
    "response.output_audio.delta": _keep("response.audio.delta", *_DELTA),
    "response.output_audio.done": _keep("response.audio.done", *_PART_KEYS),
    "response.output_audio_transcript.delta": _keep("response.audio_transcript.delta",
                                                    *_DELTA),
    "response.output_audio_transcript.done": _keep("response.audio_transcript.done",
                                                   *_PART_KEYS, "transcript"),
    "response.output_text.delta": _keep("response.text.delta", *_DELTA),
    "response.output_text.done": _keep("response.text.done", *_PART_KEYS, "text"),
    "response.function_call_arguments.delta": _keep(
        "response.function_call_arguments.delta", "event_id", "response_id", "item_id",
        "output_index", "call_id", "delta"),
    # GA added `name`; beta clients take it from response.output_item.added.
    "response.function_call_arguments.done": _keep(
        "response.function_call_arguments.done", "event_id", "response_id", "item_id",
        "output_index", "call_id", "arguments"),
    "output_audio_buffer.started": _keep("output_audio_buffer.started", "event_id",
                                         "response_id"),
    "output_audio_buffer.stopped": _keep("output_audio_buffer.stopped", "event_id",
                                         "response_id"),
    "output_audio_buffer.cleared": _keep("output_audio_buffer.cleared", "event_id",
                                         "response_id"),
    # GA-only, no beta meaning: a beta client cannot set idle_timeout_ms, has no SIP leg,
    # no diarization events and no MCP tools.
    "input_audio_buffer.timeout_triggered": _drop,
    "input_audio_buffer.dtmf_event_received": _drop,
    "conversation.item.input_audio_transcription.segment": _drop,
    "mcp_list_tools.in_progress": _drop,
    "mcp_list_tools.completed": _drop,
    "mcp_list_tools.failed": _drop,
    "response.mcp_call_arguments.delta": _drop,
    "response.mcp_call_arguments.done": _drop,
    "response.mcp_call.in_progress": _drop,
    "response.mcp_call.completed": _drop,
    "response.mcp_call.failed": _drop,
}
#: GA server event types that never reach a beta client.
DROPPED_SERVER_EVENT_TYPES = frozenset(t for t, h in _SERVER_HANDLERS.items() if h is _drop)
#: Every GA server event type the table knows (others are dropped too).
GA_SERVER_EVENT_TYPES = frozenset(_SERVER_HANDLERS)


def server_event_ga_to_beta(event: Json) -> list[Json]:
    """One GA server event -> the beta server events for a beta client (zero or more).

    Event types this table does not know (a newer upstream) are dropped: a beta client
    could not interpret them. Raises :class:`DialectError` only for an event without a
    string ``type``.
    """
    etype = event.get("type") if isinstance(event, dict) else None
    if not isinstance(etype, str):
        raise DialectError(ErrorCode.INVALID_TYPE, "A server event needs a string 'type'.",
                           "type")
    handler = _SERVER_HANDLERS.get(etype)
    return handler(event) if handler is not None else []


__all__ = [
    "BETA_CLIENT_EVENT_TYPES", "DROPPED_SERVER_EVENT_TYPES", "GA_SERVER_EVENT_TYPES",
    "DialectError", "ErrorCode", "beta_session_create_request_to_ga",
    "client_event_beta_to_ga", "ga_client_secret_to_beta_session_response", "ga_param_to_beta",
    "server_event_ga_to_beta", "session_beta_to_ga", "session_ga_to_beta",
    "transcription_session_beta_to_ga",
]
