"""The effective session configuration and its GA ``session.update`` semantics.

Only the fields sent change; ``turn_detection: null`` switches VAD off; an update is validated
whole before any of it applies, so a refused update leaves the session as it was.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from .config import MODEL_NAME
from .protocol import (
    ClientError,
    Json,
    check_keys,
    get_bool,
    get_choice,
    get_float,
    get_int,
    get_obj,
    get_str,
    invalid_value,
)

WireFormat = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
FORMATS: tuple[WireFormat, ...] = ("audio/pcm", "audio/pcmu", "audio/pcma")

DEFAULT_INSTRUCTIONS = (
    "You are the local offline test agent: a rule-based stand-in for a realtime model. "
    "It greets, helps, looks customers up, books appointments and repeats what it heard."
)

# semantic_vad has no silence window of its own; its eagerness picks one.
EAGERNESS_SILENCE_MS = {"low": 1200, "medium": 800, "auto": 800, "high": 400}

_SESSION_KEYS = frozenset({
    "type", "model", "instructions", "output_modalities", "audio", "tools", "tool_choice",
    "max_output_tokens", "tracing", "truncation", "include", "prompt", "reasoning",
    "parallel_tool_calls",
})
_SERVER_VAD_KEYS = frozenset({"type", "threshold", "prefix_padding_ms", "silence_duration_ms",
                              "create_response", "interrupt_response", "idle_timeout_ms"})
_SEMANTIC_VAD_KEYS = frozenset({"type", "eagerness", "create_response", "interrupt_response"})
#: A transcription session (``RealtimeTranscriptionSessionCreateRequest``): input only.
_TRANSCRIPTION_SESSION_KEYS = frozenset({"type", "audio", "include"})
#: What a transcription session transcribes with until the client says otherwise.
DEFAULT_TRANSCRIPTION: Json = {"model": "gpt-4o-mini-transcribe"}
_TRANSCRIPTION_KEYS = frozenset({"model", "language", "prompt", "languages", "keywords", "delay"})


@dataclass(slots=True)
class TurnDetection:
    type: Literal["server_vad", "semantic_vad"]
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    eagerness: str = "auto"
    idle_timeout_ms: int | None = None

    @property
    def silence_ms(self) -> int:
        if self.type == "semantic_vad":
            return EAGERNESS_SILENCE_MS[self.eagerness]
        return self.silence_duration_ms

    def to_json(self) -> Json:
        out: Json = {"type": self.type}
        if self.type == "semantic_vad":
            out["eagerness"] = self.eagerness
        else:
            out.update(threshold=self.threshold, prefix_padding_ms=self.prefix_padding_ms,
                       silence_duration_ms=self.silence_duration_ms)
            if self.idle_timeout_ms is not None:
                out["idle_timeout_ms"] = self.idle_timeout_ms
        out.update(create_response=self.create_response,
                   interrupt_response=self.interrupt_response)
        return out


@dataclass(slots=True)
class SessionConfig:
    #: "realtime" (a conversation) or "transcription" (caller audio -> transcripts, no
    #: responses): fixed when the connection opens (``?intent=transcription``).
    kind: Literal["realtime", "transcription"] = "realtime"
    instructions: str = DEFAULT_INSTRUCTIONS
    output_modalities: list[str] = field(default_factory=lambda: ["audio"])
    input_format: WireFormat = "audio/pcm"
    output_format: WireFormat = "audio/pcm"
    transcription: Json | None = None
    noise_reduction: Json | None = None
    turn_detection: TurnDetection | None = field(
        default_factory=lambda: TurnDetection("server_vad"))
    voice: str | Json = "marin"
    speed: float = 1.0
    tools: list[Json] = field(default_factory=list)
    tool_choice: str | Json = "auto"
    max_output_tokens: int | str = "inf"
    passthrough: Json = field(default_factory=lambda: {"tracing": None, "truncation": "auto"})

    def updated(self, session: Json) -> SessionConfig:
        """A copy with ``session`` (the body of a session.update) applied; ClientError if bad."""
        new = copy.deepcopy(self)
        new._apply(session)
        return new

    @classmethod
    def for_transcription(cls) -> SessionConfig:
        return cls(kind="transcription", transcription=dict(DEFAULT_TRANSCRIPTION),
                   passthrough={})

    @property
    def transcribes(self) -> bool:
        """Caller turns get transcription events (always, in a transcription session)."""
        return self.transcription is not None or self.kind == "transcription"

    def _input_json(self) -> Json:
        return {
            "format": format_json(self.input_format),
            "transcription": copy.deepcopy(self.transcription),
            "noise_reduction": copy.deepcopy(self.noise_reduction),
            "turn_detection": self.turn_detection.to_json() if self.turn_detection else None,
        }

    def to_json(self) -> Json:
        if self.kind == "transcription":
            out: Json = {"type": "transcription", "audio": {"input": self._input_json()}}
            if "include" in self.passthrough:
                out["include"] = copy.deepcopy(self.passthrough["include"])
            return out
        return {
            "type": "realtime",
            "model": MODEL_NAME,
            "output_modalities": list(self.output_modalities),
            "instructions": self.instructions,
            "audio": {
                "input": self._input_json(),
                "output": {"format": format_json(self.output_format),
                           "voice": copy.deepcopy(self.voice), "speed": self.speed},
            },
            "tools": copy.deepcopy(self.tools),
            "tool_choice": copy.deepcopy(self.tool_choice),
            "max_output_tokens": self.max_output_tokens,
            **copy.deepcopy(self.passthrough),
        }

    # -- applying an update ------------------------------------------------------------------

    def _apply(self, s: Json) -> None:
        if self.kind == "transcription" and s.get("type") == "transcription":
            self._apply_transcription(s)
            return
        check_keys(s, _SESSION_KEYS, "session")
        kind = get_str(s, "type", "session", required=True)
        if kind != self.kind:
            how = "?intent=transcription" if kind == "transcription" else "?model=..."
            raise ClientError("invalid_value",
                              f"Invalid value: '{kind}'. This connection serves a "
                              f"'{self.kind}' session (open one with {how}).", "session.type")
        get_str(s, "model", "session")  # accepted; the engine's model never changes
        if (instructions := get_str(s, "instructions", "session")) is not None:
            self.instructions = instructions
        if "output_modalities" in s:
            self.output_modalities = parse_modalities(s["output_modalities"],
                                                      "session.output_modalities")
        if (audio := get_obj(s, "audio", "session")) is not None:
            self._apply_audio(audio)
        if "tools" in s:
            self.tools = parse_tools(s["tools"], "session.tools")
        if "tool_choice" in s:
            self.tool_choice = parse_tool_choice(s["tool_choice"], "session.tool_choice")
        if "max_output_tokens" in s:
            self.max_output_tokens = parse_max_tokens(s["max_output_tokens"],
                                                      "session.max_output_tokens")
        for key in ("tracing", "truncation", "include", "prompt", "reasoning",
                    "parallel_tool_calls"):
            if key in s:
                self.passthrough[key] = _passthrough(key, s[key])

    def _apply_transcription(self, s: Json) -> None:
        check_keys(s, _TRANSCRIPTION_SESSION_KEYS, "session")
        if (audio := get_obj(s, "audio", "session")) is not None:
            check_keys(audio, {"input"}, "session.audio")
            self._apply_audio(audio)
        if "include" in s:
            self.passthrough["include"] = _passthrough("include", s["include"])

    def _apply_audio(self, audio: Json) -> None:
        check_keys(audio, {"input", "output"}, "session.audio")
        if (inp := get_obj(audio, "input", "session.audio")) is not None:
            path = "session.audio.input"
            check_keys(inp, {"format", "transcription", "noise_reduction", "turn_detection"}, path)
            if (fmt := get_obj(inp, "format", path)) is not None:
                self.input_format = parse_format(fmt, f"{path}.format")
            if "transcription" in inp:
                self.transcription = _transcription(inp["transcription"], f"{path}.transcription")
            if "noise_reduction" in inp:
                self.noise_reduction = _noise_reduction(inp["noise_reduction"],
                                                        f"{path}.noise_reduction")
            if "turn_detection" in inp:
                self.turn_detection = self._turn_detection(inp["turn_detection"],
                                                           f"{path}.turn_detection")
        if (out := get_obj(audio, "output", "session.audio")) is not None:
            path = "session.audio.output"
            check_keys(out, {"format", "voice", "speed"}, path)
            if (fmt := get_obj(out, "format", path)) is not None:
                self.output_format = parse_format(fmt, f"{path}.format")
            if "voice" in out:
                self.voice = parse_voice(out["voice"], f"{path}.voice")
            if (speed := get_float(out, "speed", path, 0.25, 1.5)) is not None:
                self.speed = speed

    def _turn_detection(self, value: object, path: str) -> TurnDetection | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ClientError("invalid_type", f"Invalid type for '{path}': expected an object.",
                              path)
        kind = get_choice(value, "type", path, ("server_vad", "semantic_vad"), required=True)
        keys = _SERVER_VAD_KEYS if kind == "server_vad" else _SEMANTIC_VAD_KEYS
        check_keys(value, keys, path)
        current = self.turn_detection
        td = copy.copy(current) if current and current.type == kind else TurnDetection(
            cast(Literal["server_vad", "semantic_vad"], kind))
        if (threshold := get_float(value, "threshold", path, 0.0, 1.0)) is not None:
            td.threshold = threshold
        if (pad := get_int(value, "prefix_padding_ms", path, minimum=0)) is not None:
            td.prefix_padding_ms = pad
        if (silence := get_int(value, "silence_duration_ms", path, minimum=0)) is not None:
            td.silence_duration_ms = silence
        if (idle := get_int(value, "idle_timeout_ms", path, minimum=0)) is not None:
            td.idle_timeout_ms = idle
        if (create := get_bool(value, "create_response", path)) is not None:
            td.create_response = create
        if (interrupt := get_bool(value, "interrupt_response", path)) is not None:
            td.interrupt_response = interrupt
        eagerness = get_choice(value, "eagerness", path, tuple(EAGERNESS_SILENCE_MS))
        if eagerness is not None:
            td.eagerness = eagerness
        return td


# -- shared parsers (also used by response.create) ---------------------------------------------

def format_json(fmt: WireFormat) -> Json:
    return {"type": "audio/pcm", "rate": 24000} if fmt == "audio/pcm" else {"type": fmt}


def parse_format(fmt: Json, path: str) -> WireFormat:
    kind = get_choice(fmt, "type", path, FORMATS, required=True)
    if kind == "audio/pcm":
        check_keys(fmt, {"type", "rate"}, path)
        rate = fmt.get("rate", 24000)
        if rate != 24000:
            raise ClientError("invalid_value", f"Invalid value: {rate!r}. audio/pcm is only "
                              "supported at rate 24000.", f"{path}.rate")
    else:
        check_keys(fmt, {"type"}, path)
    return cast(WireFormat, kind)


def parse_modalities(value: object, path: str) -> list[str]:
    if value not in (["audio"], ["text"]):
        raise ClientError("invalid_value", f"Invalid value: {value!r}. Supported values are: "
                          "['audio'] and ['text'].", path)
    return list(cast(list[str], value))


def parse_voice(value: object, path: str) -> str | Json:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str) and set(value) == {"id"}:
        return dict(value)
    raise ClientError("invalid_type", f"Invalid type for '{path}': expected a voice name or "
                      "{'id': ...}.", path)


def parse_tools(value: object, path: str) -> list[Json]:
    if not isinstance(value, list):
        raise ClientError("invalid_type", f"Invalid type for '{path}': expected an array.", path)
    tools: list[Json] = []
    for i, tool in enumerate(value):
        p = f"{path}[{i}]"
        if not isinstance(tool, dict):
            raise ClientError("invalid_type", f"Invalid type for '{p}': expected an object.", p)
        if tool.get("type", "function") != "function":
            raise invalid_value(f"{p}.type", tool.get("type"), ("function",))
        check_keys(tool, {"type", "name", "description", "parameters"}, p)
        get_str(tool, "name", p, required=True)
        get_str(tool, "description", p)
        get_obj(tool, "parameters", p)
        tools.append({"type": "function", **{k: v for k, v in tool.items() if k != "type"}})
    return tools


def parse_tool_choice(value: object, path: str) -> str | Json:
    if isinstance(value, str):
        if value not in ("none", "auto", "required"):
            raise invalid_value(path, value, ("none", "auto", "required"))
        return value
    if isinstance(value, dict):
        check_keys(value, {"type", "name"}, path)
        get_choice(value, "type", path, ("function",), required=True)
        get_str(value, "name", path, required=True)
        return dict(value)
    raise ClientError("invalid_type", f"Invalid type for '{path}'.", path)


def parse_max_tokens(value: object, path: str) -> int | str:
    if value == "inf":
        return "inf"
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 4096:
        return value
    raise ClientError("invalid_value", f"Invalid value for '{path}': an integer in [1, 4096] or "
                      "'inf'.", path)


def _transcription(value: object, path: str) -> Json | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ClientError("invalid_type", f"Invalid type for '{path}': expected an object.", path)
    check_keys(value, _TRANSCRIPTION_KEYS, path)
    for key in ("model", "language", "prompt"):
        get_str(value, key, path)
    return dict(value)


def _noise_reduction(value: object, path: str) -> Json | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ClientError("invalid_type", f"Invalid type for '{path}': expected an object.", path)
    check_keys(value, {"type", "strength"}, path)
    get_choice(value, "type", path, ("near_field", "far_field"))
    get_float(value, "strength", path, 0.0, 1.0)
    return dict(value)


def _passthrough(key: str, value: Any) -> Any:
    """Fields the engine echoes without acting on them, checked just enough to echo safely."""
    path = f"session.{key}"
    ok = {
        "tracing": value is None or value == "auto" or isinstance(value, dict),
        "truncation": value in ("auto", "disabled") or isinstance(value, dict),
        "include": value is None or (isinstance(value, list) and all(
            v == "item.input_audio_transcription.logprobs" for v in value)),
        "prompt": value is None or (isinstance(value, dict) and isinstance(value.get("id"), str)),
        "reasoning": value is None or isinstance(value, dict),
        "parallel_tool_calls": value is None or isinstance(value, bool),
    }[key]
    if not ok:
        raise ClientError("invalid_value", f"Invalid value for '{path}'.", path)
    if key == "tracing" and isinstance(value, dict):
        check_keys(value, {"workflow_name", "group_id", "metadata"}, path)
    if key == "truncation" and isinstance(value, dict):
        check_keys(value, {"type", "retention_ratio", "token_limits"}, path)
    if key == "reasoning" and isinstance(value, dict):
        check_keys(value, {"effort"}, path)
    return copy.deepcopy(value)
