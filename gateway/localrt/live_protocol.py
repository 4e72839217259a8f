"""The wire shapes of GPT-Live (``/v1/live/sessions``): server events, errors, and the strict
checks of ``session.start`` / ``session.update`` configuration.

Every key the engine sends in Live is built here (the test oracle fails on any key
``openai.types.live`` does not declare). Checks reuse the Realtime field helpers
(``protocol.py``): an unknown key anywhere is ``unknown_parameter`` with its dotted ``param``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from .protocol import (
    INVALID_REQUEST,
    ClientError,
    Json,
    check_keys,
    get_bool,
    get_int,
    get_obj,
    get_str,
    invalid_value,
    new_id,
)
from .sessionconfig import WireFormat

DelegationType = Literal["client", "responses"]
CloseReason = Literal["close_requested", "expired", "content", "remote_hangup",
                      "connection_lost"]

#: Live sessions expire after this long (the resource's ``expires_at``).
SESSION_SECONDS = 60 * 60
DEFAULT_VOICE = "marin"
ENVELOPE = frozenset({"type", "event_id"})

_SESSION_KEYS = frozenset({"model", "audio", "client", "delegation", "input", "instructions",
                           "safety_identifier", "store", "triggers"})
_RESPONSES_KEYS = frozenset({"model", "instructions", "max_output_tokens",
                             "parallel_tool_calls", "tool_choice", "tools"})
_FUNCTION_KEYS = frozenset({"type", "name", "description", "parameters", "strict"})
_ITEM_KEYS = frozenset({"role", "content", "id", "status", "type"})
_ROLES = ("developer", "user", "assistant")


def live_event(type_: str, **fields: Any) -> Json:
    return {"type": type_, "event_id": new_id("event"), **fields}


def live_error(exc: ClientError, client_event_id: str | None) -> Json:
    """``error`` as ``openai.types.live.ErrorEvent``: the id of the command at both levels."""
    error: Json = {"type": exc.type, "code": exc.code, "message": exc.message,
                   "param": exc.param}
    if client_event_id is not None:
        error["client_event_id"] = client_event_id
        return live_event("error", error=error, client_event_id=client_event_id)
    return live_event("error", error=error)


def refused(code: str, message: str, param: str | None = None) -> ClientError:
    return ClientError(code, message, param, INVALID_REQUEST)


@dataclass(slots=True)
class LiveConfig:
    """The effective session: what ``session.started`` reports and the engine obeys."""

    model: str
    input_format: WireFormat = "audio/pcm"
    voice: str | Json = DEFAULT_VOICE
    delegation: DelegationType = "client"
    ack_delay_ms: int = 0
    responses: Json | None = None  # the Responses backend config, as sent (checked)
    input: list[Json] = field(default_factory=list)
    instructions: str | None = None
    safety_identifier: str | None = None
    store: bool = False

    def resource(self, session_id: str, started_at: int, reported_model: str) -> Json:
        fmt: Json = ({"type": "audio/pcm", "rate": 24000} if self.input_format == "audio/pcm"
                     else {"type": self.input_format, "rate": 8000})
        delegation: Json = {"type": self.delegation,
                            "acknowledgement_delay_ms": self.ack_delay_ms}
        if self.delegation == "responses":
            delegation["responses"] = self.responses
        out: Json = {"id": session_id, "expires_at": started_at + SESSION_SECONDS,
                     "model": reported_model, "status": "active",
                     "audio": {"format": fmt, "output": {"voice": self.voice}},
                     "delegation": delegation, "input": self.input,
                     "instructions": self.instructions, "store": self.store}
        if self.safety_identifier is not None:
            out["safety_identifier"] = self.safety_identifier
        return out

    def function_tools(self) -> list[Json]:
        return list((self.responses or {}).get("tools") or [])


def parse_start(raw: Json) -> LiveConfig:
    """``session.start``'s ``session`` (``SessionConfig``) -> the effective config."""
    path = "session"
    check_keys(raw, _SESSION_KEYS, path)
    model = get_str(raw, "model", path, required=True)
    assert model is not None
    cfg = LiveConfig(model=model)
    if (audio := get_obj(raw, "audio", path)) is not None:
        _parse_audio(audio, cfg)
    if raw.get("client") is not None:
        raise refused("invalid_value", "session.client configures a WebRTC frontend's data "
                      "channel; it is not accepted on a primary WebSocket.", "session.client")
    if raw.get("triggers"):
        raise refused("unsupported_parameter", "Decisions triggers are not supported by the "
                      "local engine.", "session.triggers")
    _parse_delegation(raw.get("delegation"), cfg, f"{path}.delegation", start=True)
    cfg.input = _parse_input(raw.get("input"), f"{path}.input")
    cfg.instructions = get_str(raw, "instructions", path)
    cfg.safety_identifier = get_str(raw, "safety_identifier", path)
    cfg.store = bool(get_bool(raw, "store", path))
    return cfg


def apply_update(raw: Json, cfg: LiveConfig) -> None:
    """``session.update``'s ``session`` (``SessionUpdateConfig``): sparse, owner fixed.
    Checked whole before anything changes, so a refused update changes nothing."""
    path = "session"
    check_keys(raw, {"delegation", "triggers"}, path)
    if raw.get("triggers"):
        raise refused("unsupported_parameter", "Decisions triggers are not supported by the "
                      "local engine.", "session.triggers")
    if "delegation" in raw:
        trial = replace(cfg)
        _parse_delegation(raw["delegation"], trial, f"{path}.delegation", start=False)
        if trial.delegation != cfg.delegation:
            raise refused("invalid_value", f"The delegation type cannot change: this session "
                          f"delegates to '{cfg.delegation}'.", f"{path}.delegation.type")
        cfg.ack_delay_ms, cfg.responses = trial.ack_delay_ms, trial.responses


def _parse_audio(audio: Json, cfg: LiveConfig) -> None:
    path = "session.audio"
    check_keys(audio, {"format", "output"}, path)
    if (fmt := get_obj(audio, "format", path)) is not None:
        fpath = f"{path}.format"
        check_keys(fmt, {"type", "rate"}, fpath)
        kind = get_str(fmt, "type", fpath, required=True)
        rate = get_int(fmt, "rate", fpath, required=True)
        if kind == "audio/pcm":
            if rate == 16000:
                raise refused("unsupported_value", "The local engine speaks audio/pcm at "
                              "24000 Hz only.", f"{fpath}.rate")
            if rate != 24000:
                raise refused("invalid_value", f"Invalid value: {rate}. Supported values are: "
                              "16000 and 24000.", f"{fpath}.rate")
        elif kind in ("audio/pcmu", "audio/pcma"):
            if rate != 8000:
                raise refused("invalid_value", f"G.711 audio is 8000 Hz, not {rate}.",
                              f"{fpath}.rate")
        else:
            raise invalid_value(f"{fpath}.type", kind, ("audio/pcm", "audio/pcmu", "audio/pcma"))
        cfg.input_format = cast(WireFormat, kind)
    if (out := get_obj(audio, "output", path)) is not None:
        check_keys(out, {"voice"}, f"{path}.output")
        voice = out.get("voice")
        if isinstance(voice, dict):
            check_keys(voice, {"id"}, f"{path}.output.voice")
            get_str(voice, "id", f"{path}.output.voice", required=True)
        elif voice is not None and not isinstance(voice, str):
            raise refused("invalid_type", "Invalid type for 'session.audio.output.voice': "
                          "expected a string or an object.", f"{path}.output.voice")
        if voice is not None:
            cfg.voice = voice


def _parse_delegation(value: object, cfg: LiveConfig, path: str, *, start: bool) -> None:
    if value is None:
        if start:
            cfg.delegation = "client"
        return
    if not isinstance(value, dict):
        raise refused("invalid_type", f"Invalid type for '{path}': expected an object.", path)
    kind = get_str(value, "type", path, required=True)
    if kind == "decisions":
        raise refused("unsupported_value", "Decisions delegation is not supported by the local "
                      "engine; use 'client' or 'responses'.", f"{path}.type")
    if kind not in ("client", "responses"):
        raise invalid_value(f"{path}.type", kind, ("client", "responses", "decisions"))
    allowed = {"type", "acknowledgement_delay_ms"} | ({"responses"} if kind == "responses"
                                                      else set())
    check_keys(value, allowed, path)
    delay = get_int(value, "acknowledgement_delay_ms", path, minimum=0)
    if kind == "responses":
        backend = get_obj(value, "responses", path, required=start)
        if backend is not None:
            cfg.responses = _parse_responses(backend, f"{path}.responses",
                                             None if start else cfg.responses)
    cfg.delegation = cast(DelegationType, kind)
    if delay is not None:
        cfg.ack_delay_ms = delay
    elif start:
        cfg.ack_delay_ms = 0


def _parse_responses(backend: Json, path: str, current: Json | None) -> Json:
    check_keys(backend, _RESPONSES_KEYS, path)
    merged: Json = dict(current or {})
    if current is None:
        get_str(backend, "model", path, required=True)
    for key in ("model", "instructions"):
        if get_str(backend, key, path) is not None:
            merged[key] = backend[key]
    if get_int(backend, "max_output_tokens", path, minimum=1) is not None:
        merged["max_output_tokens"] = backend["max_output_tokens"]
    if get_bool(backend, "parallel_tool_calls", path) is not None:
        merged["parallel_tool_calls"] = backend["parallel_tool_calls"]
    choice = backend.get("tool_choice")
    if choice is not None:
        if choice not in ("auto", "none", "required"):
            raise refused("unsupported_value", "The local engine's Responses backend takes "
                          "tool_choice 'auto', 'none' or 'required'.", f"{path}.tool_choice")
        merged["tool_choice"] = choice
    tools = backend.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise refused("invalid_type", f"Invalid type for '{path}.tools': expected an "
                          "array.", f"{path}.tools")
        merged["tools"] = [_function_tool(t, f"{path}.tools[{i}]") for i, t in enumerate(tools)]
    return merged


def _function_tool(tool: object, path: str) -> Json:
    if not isinstance(tool, dict):
        raise refused("invalid_type", f"Invalid type for '{path}': expected an object.", path)
    if tool.get("type") != "function":
        raise refused("unsupported_value", "The local engine's Responses backend runs no hosted "
                      "tools: only type 'function' (answered by the client).", f"{path}.type")
    check_keys(tool, _FUNCTION_KEYS, path)
    get_str(tool, "name", path, required=True)
    get_str(tool, "description", path)
    get_obj(tool, "parameters", path)
    get_bool(tool, "strict", path)
    return dict(tool)


def _parse_input(value: object, path: str) -> list[Json]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise refused("invalid_type", f"Invalid type for '{path}': expected an array.", path)
    if len(value) > 128:
        raise refused("invalid_value", "At most 128 startup messages.", path)
    items: list[Json] = []
    for i, item in enumerate(value):
        ipath = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise refused("invalid_type", f"Invalid type for '{ipath}': expected an object.",
                          ipath)
        check_keys(item, _ITEM_KEYS, ipath)
        role = get_str(item, "role", ipath, required=True)
        if role not in _ROLES:
            raise invalid_value(f"{ipath}.role", role, _ROLES)
        content = item.get("content")
        if not isinstance(content, list) or len(content) != 1 or \
                not isinstance(content[0], dict):
            raise refused("invalid_value", "A startup message has exactly one text part.",
                          f"{ipath}.content")
        part = content[0]
        check_keys(part, {"text", "type"}, f"{ipath}.content[0]")
        get_str(part, "text", f"{ipath}.content[0]", required=True)
        kinds = ("output_text", "text") if role == "assistant" else ("input_text",)
        if part.get("type") is not None and part["type"] not in kinds:
            raise invalid_value(f"{ipath}.content[0].type", part["type"], kinds)
        items.append(dict(item))
    return items


def input_text(items: list[Json]) -> list[tuple[str, str]]:
    """(role, text) of the startup history."""
    return [(str(i["role"]), str(i["content"][0]["text"])) for i in items]
