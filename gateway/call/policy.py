"""What a client may set: merges client session config with the agent profile.

Sessions here are GA-shaped (``openai.types.realtime`` session config). A field the
profile locks may be *repeated* with its current value (clients written for OpenAI often
resend their whole config) but never changed; a change is refused with the field's path.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from gateway.config import CHANGEABLE_FIELDS, VAD_PRESETS, Profile

Session = dict[str, Any]
ToolLookup = Callable[[str], dict[str, Any] | None]

PCM_FORMAT: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}

#: Client-visible session path -> the permission name a profile grants in client_may_change.
_PERMISSION: dict[tuple[str, ...], str] = {
    ("instructions",): "instructions",
    ("audio", "output", "voice"): "voice",
    ("audio", "output", "speed"): "speed",
    ("audio", "input", "turn_detection"): "turn_detection",
    ("audio", "input", "transcription"): "transcription",
    ("audio", "input", "noise_reduction"): "noise_reduction",
    ("tools",): "tools",
    ("tool_choice",): "tool_choice",
    ("output_modalities",): "output_modalities",
    ("max_output_tokens",): "max_output_tokens",
    ("include",): "include",
    ("truncation",): "truncation",
    ("tracing",): "tracing",
}
#: Fields no client may change, with the reason given back.
_FIXED: dict[tuple[str, ...], str] = {
    ("model",): "the model is chosen when the session is created",
    ("audio", "input", "format"): "the audio format is fixed by the transport",
    ("audio", "output", "format"): "the audio format is fixed by the transport",
    ("prompt",): "stored prompts are not available through this gateway",
    ("reasoning",): "reasoning settings are set by the agent profile",
    ("parallel_tool_calls",): "tool settings are set by the agent profile",
}
_KNOWN_TOP = {"type", "object", "id", "expires_at", "audio"} | {p[0] for p in _PERMISSION} | {
    p[0] for p in _FIXED}
_KNOWN_AUDIO = {"input": {"format", "transcription", "noise_reduction", "turn_detection"},
                "output": {"format", "voice", "speed"}}


class PolicyError(Exception):
    def __init__(self, param: str, message: str, code: str = "locked_field") -> None:
        super().__init__(message)
        self.param = param
        self.message = message
        self.code = code


def _turn_detection(profile: Profile) -> dict[str, Any] | None:
    if profile.turn_detection == "none":
        return None
    return VAD_PRESETS[profile.turn_detection].turn_detection()


def base_session(profile: Profile, tools: ToolLookup,
                 audio_format: dict[str, Any] | None = None) -> Session:
    """The profile's session as a client sees it (``model`` is the profile's alias)."""
    fmt = audio_format or PCM_FORMAT
    specs = [s for s in (tools(n) for n in profile.tools) if s is not None]
    session: Session = {
        "type": "realtime",
        "model": profile.model,
        "instructions": profile.instructions,
        "output_modalities": ["audio"],
        "audio": {
            "input": {"format": dict(fmt), "turn_detection": _turn_detection(profile),
                      "transcription": ({"model": profile.transcription_model}
                                        if profile.transcription_model else None),
                      "noise_reduction": None},
            "output": {"format": dict(fmt), "voice": profile.voice},
        },
        "tools": specs,
        "tool_choice": "auto",
    }
    return session


def _get(d: Session, path: tuple[str, ...]) -> tuple[bool, Any]:
    cur: Any = d
    for k in path:
        if not isinstance(cur, dict) or k not in cur:
            return False, None
        cur = cur[k]
    return True, cur


def _set(d: Session, path: tuple[str, ...], value: Any) -> None:
    cur = d
    for k in path[:-1]:
        nxt = cur.get(k)
        if not isinstance(nxt, dict):
            nxt = cur[k] = {}
        cur = nxt
    cur[path[-1]] = copy.deepcopy(value)


def _check_shape(update: Session) -> None:
    if update.get("type", "realtime") != "realtime":
        raise PolicyError("session.type", "Only realtime sessions are available here.",
                          code="invalid_value")
    for key in update:
        if key not in _KNOWN_TOP:
            raise PolicyError(f"session.{key}", f"Unknown session field '{key}'.",
                              code="unknown_parameter")
    audio = update.get("audio")
    if audio is None:
        return
    if not isinstance(audio, dict):
        raise PolicyError("session.audio", "session.audio must be an object.",
                          code="invalid_type")
    for side, v in audio.items():
        if side not in _KNOWN_AUDIO or not isinstance(v, dict):
            raise PolicyError(f"session.audio.{side}", f"Unknown or malformed audio.{side}.",
                              code="unknown_parameter")
        for key in v:
            if key not in _KNOWN_AUDIO[side]:
                raise PolicyError(f"session.audio.{side}.{key}",
                                  f"Unknown session field 'audio.{side}.{key}'.",
                                  code="unknown_parameter")


def _resolve_tools(value: Any, profile: Profile, tools: ToolLookup) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise PolicyError("session.tools", "session.tools must be a list.", code="invalid_type")
    out = []
    for i, t in enumerate(value):
        name = t.get("name") if isinstance(t, dict) else None
        if not isinstance(name, str):
            raise PolicyError(f"session.tools[{i}]", "Each tool needs a name.",
                              code="invalid_value")
        spec = tools(name) if name in profile.tools else None
        if spec is None:
            raise PolicyError(f"session.tools[{i}]",
                              f"Tool '{name}' is not offered by this agent profile; tools run "
                              "on the gateway and only the profile's tools may be declared.",
                              code="tool_not_allowed")
        out.append(spec)  # the server's definition wins over what the client described
    return out


def apply_update(current: Session, update: Any, profile: Profile, tools: ToolLookup) -> Session:
    """``current`` with a client's ``session.update`` applied, or :class:`PolicyError`.

    The update is applied all-or-nothing: one refused field refuses the whole event.
    """
    if not isinstance(update, dict):
        raise PolicyError("session", "session must be an object.", code="invalid_type")
    _check_shape(update)
    allowed = set(CHANGEABLE_FIELDS - profile.locked_fields())
    new = copy.deepcopy(current)
    paths = [p for p in (*_PERMISSION, *_FIXED) if _get(update, p)[0]]
    for path in paths:
        value = _get(update, path)[1]
        if path == ("tools",) and "tools" in allowed:
            value = _resolve_tools(value, profile, tools)
        if value == _get(current, path)[1]:
            continue
        dotted = "session." + ".".join(path)
        if path in _FIXED:
            raise PolicyError(dotted, f"'{'.'.join(path)}' cannot be changed: {_FIXED[path]}.")
        if _PERMISSION[path] not in allowed:
            raise PolicyError(dotted, f"'{'.'.join(path)}' is locked by the agent profile "
                              f"'{profile.name}' and cannot be changed by a client.")
        if path == ("audio", "input", "turn_detection") and isinstance(value, dict):
            value = _check_turn_detection(value)
        _set(new, path, value)
    return new


def _check_turn_detection(td: dict[str, Any]) -> dict[str, Any]:
    kind = td.get("type")
    if kind not in ("server_vad", "semantic_vad"):
        raise PolicyError("session.audio.input.turn_detection.type",
                          "turn_detection.type must be 'server_vad' or 'semantic_vad'.",
                          code="invalid_value")
    thr = td.get("threshold")
    if thr is not None and not (isinstance(thr, int | float) and 0.0 <= thr <= 1.0):
        raise PolicyError("session.audio.input.turn_detection.threshold",
                          "threshold must be a number from 0.0 to 1.0.", code="invalid_value")
    return td


def for_upstream(session: Session) -> Session:
    """The session as sent upstream in ``session.update`` (model is set by the URL)."""
    out = copy.deepcopy(session)
    out.pop("model", None)
    for k in ("id", "object", "expires_at", "client_secret"):
        out.pop(k, None)
    return out


def for_client(upstream_session: Any, profile: Profile) -> Session:
    """Rewrite an upstream session object so the client never sees upstream identity."""
    out: Session = copy.deepcopy(upstream_session) if isinstance(upstream_session, dict) else {}
    out["model"] = profile.model
    # GA session events carry the config only (openai.types.realtime.SessionCreatedEvent):
    # no upstream id, object tag or secret.
    for k in ("id", "object", "client_secret", "expires_at"):
        out.pop(k, None)
    return out
