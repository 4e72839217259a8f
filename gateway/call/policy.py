"""What a client may set: a client's session config merged with the agent profile.

Transparent by default: a client may set any field it could set at OpenAI; the upstream model
stays the operator's. A profile locks fields explicitly (``Profile.locked``), and a lock holds
on every event that can carry the field (:mod:`gateway.call.locks` checks the per-response
and per-item ones). Who is bound by the locks is the caller's :class:`Trust`: an ``ek_``
token's holder always, an API-key holder only when the profile says ``lock_api_keys``.

Repeating a value is never a change (clients written for OpenAI resend their whole config),
and a server default repeated in another spelling (a PCM format without ``rate``, ``tracing:
"auto"``) is the same value. One refused field refuses the whole event, and the error says so.

Tools: the profile's tools are server tools (run on the gateway). Tools a client declares are
its own; their calls reach the client. A client tool with a server tool's name replaces it
for the call (the gateway never runs its tool in place of the client's) unless tools are
locked, where it is refused (``tool_conflict``). A client repeating the server's own
definition (echoing a session it was sent) claims nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.config import VAD_PRESETS, Profile

Session = dict[str, Any]
ToolLookup = Callable[[str], dict[str, Any] | None]

PCM_FORMAT: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}

#: Client-visible session path -> the lock name a profile uses in ``locked``.
LOCKABLE: dict[tuple[str, ...], str] = {
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
    ("prompt",): "prompt",
}
FORMAT_PATHS: tuple[tuple[str, ...], ...] = (
    ("audio", "input", "format"), ("audio", "output", "format"))
#: GA session fields (``RealtimeSessionCreateRequest``) and what each audio side holds.
_KNOWN_TOP = {"type", "object", "id", "expires_at", "model", "audio"} | {
    p[0] for p in LOCKABLE}
_KNOWN_AUDIO = {"input": {"format", "transcription", "noise_reduction", "turn_detection"},
                "output": {"format", "voice", "speed"}}
#: A field absent from the session means OpenAI's default: repeating it is no change.
_DEFAULTS: dict[tuple[str, ...], tuple[Any, ...]] = {
    ("tracing",): (None, "auto"),
    ("tool_choice",): ("auto",),
    ("truncation",): ("auto",),
    ("max_output_tokens",): ("inf",),
    ("audio", "output", "speed"): (1.0,),
    ("include",): (None, []),
    ("prompt",): (None,),
    ("audio", "input", "noise_reduction"): (None,),
}
_G711 = ("audio/pcmu", "audio/pcma")
#: A transcription session (``RealtimeTranscriptionSessionCreateRequest``) has input only
#: and no model of its own: the lockable fields it carries are these.
_TRANSCRIPTION_TOP = {"type", "object", "id", "expires_at", "audio", "include"}
_TRANSCRIPTION_AUDIO = {"input": _KNOWN_AUDIO["input"]}
TRANSCRIPTION = "transcription"


class PolicyError(Exception):
    def __init__(self, param: str, message: str, code: str = "locked_field") -> None:
        super().__init__(message)
        self.param = param
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class Trust:
    """Who speaks on a call's event channel, and so which locks bind them."""

    #: Holds a gateway API key (a backend, a server program, a sideband connection).
    api_key: bool

    def locked(self, profile: Profile) -> frozenset[str]:
        if self.api_key and not profile.lock_api_keys:
            return frozenset()
        return profile.locked_fields()


TOKEN = Trust(api_key=False)
API_KEY = Trust(api_key=True)

#: What a transport lets the audio format be: any format, only PCM (WebRTC carries Opus and
#: the gateway decodes it to PCM), or the one it has (a phone line is G.711).
FormatRule = str  # "any" | "pcm" | "fixed"


def _turn_detection(profile: Profile) -> dict[str, Any] | None:
    if profile.turn_detection == "none":
        return None
    return VAD_PRESETS[profile.turn_detection].turn_detection()


def server_tool_specs(profile: Profile, tools: ToolLookup) -> list[dict[str, Any]]:
    return [s for s in (tools(n) for n in profile.tools) if s is not None]


def base_session(profile: Profile, tools: ToolLookup,
                 audio_format: dict[str, Any] | None = None) -> Session:
    """The profile's session as a client sees it (``model`` is the profile's alias)."""
    fmt = audio_format or PCM_FORMAT
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
        "tools": server_tool_specs(profile, tools),
        "tool_choice": "auto",
    }
    return session


def base_transcription_session(profile: Profile,
                               audio_format: dict[str, Any] | None = None) -> Session:
    """The profile's transcription session (``session.type: "transcription"``): caller
    audio in, transcripts out, no model answering."""
    return {
        "type": TRANSCRIPTION,
        "audio": {"input": {
            "format": dict(audio_format or PCM_FORMAT),
            "transcription": {"model": profile.transcription_model or "gpt-4o-mini-transcribe"},
            "noise_reduction": None,
            "turn_detection": _turn_detection(profile)}},
        "include": [],
    }


def session_kind(session: Any) -> str:
    """``"realtime"`` or ``"transcription"``: what a (GA) session config is."""
    if isinstance(session, dict) and session.get("type") == TRANSCRIPTION:
        return TRANSCRIPTION
    return "realtime"


def get_path(d: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
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


def normal_format(fmt: Any) -> Any:
    """A format as a value: ``{"type": "audio/pcm"}`` is ``{"type": "audio/pcm", "rate":
    24000}`` (the only rate there is)."""
    if isinstance(fmt, dict) and fmt.get("type") == "audio/pcm" and "rate" not in fmt:
        return dict(fmt, rate=24000)
    return fmt


def same_value(path: tuple[str, ...], a: Any, b: Any) -> bool:
    """Is ``a`` (what a client sent) the value ``b`` (what the session has) for ``path``?"""
    if path in FORMAT_PATHS:
        return bool(normal_format(a) == normal_format(b))
    if a == b:
        return True
    defaults = _DEFAULTS.get(path)
    return defaults is not None and a in defaults and b in defaults


def _check_shape(update: Session, current: str = "realtime") -> None:
    kind = update.get("type", current)
    if kind != current:
        why = "(a transcription session is created as one)" if current != TRANSCRIPTION else \
            "(a session keeps the type it was created with)"
        raise PolicyError("session.type", f"session.type must be '{current}' here {why}.",
                          code="invalid_value")
    known_top, known_audio = (_TRANSCRIPTION_TOP, _TRANSCRIPTION_AUDIO) \
        if kind == TRANSCRIPTION else (_KNOWN_TOP, _KNOWN_AUDIO)
    for key in update:
        if key not in known_top:
            raise PolicyError(f"session.{key}", f"Unknown parameter: 'session.{key}'.",
                              code="unknown_parameter")
    audio = update.get("audio")
    if audio is None:
        return
    if not isinstance(audio, dict):
        raise PolicyError("session.audio", "session.audio must be an object.",
                          code="invalid_type")
    for side, v in audio.items():
        if side not in known_audio or not isinstance(v, dict):
            raise PolicyError(f"session.audio.{side}", f"Unknown or malformed audio.{side}.",
                              code="unknown_parameter")
        for key in v:
            if key not in known_audio[side]:
                raise PolicyError(f"session.audio.{side}.{key}",
                                  f"Unknown parameter: 'session.audio.{side}.{key}'.",
                                  code="unknown_parameter")


def _tool_name(t: Any) -> str | None:
    return t.get("name") if isinstance(t, dict) and isinstance(t.get("name"), str) else None


def _same_tool(client: dict[str, Any], server: dict[str, Any]) -> bool:
    """The client's declaration is the server's own (echoed back from a session it got)."""
    return all(client.get(k) == server.get(k) for k in ("type", "name", "parameters")) and \
        client.get("description", server.get("description")) == server.get("description")


def merge_tools(value: Any, profile: Profile, tools: ToolLookup, *, tools_locked: bool,
                param: str = "session.tools") -> list[dict[str, Any]]:
    """The tool list a client's ``tools`` makes: the server's tools it does not replace,
    then the client's own (functions, MCP servers: whatever OpenAI accepts)."""
    if not isinstance(value, list):
        raise PolicyError(param, f"{param} must be an array.", code="invalid_type")
    servers = {n: s for n in profile.tools if (s := tools(n)) is not None}
    claimed: set[str] = set()
    own: list[dict[str, Any]] = []
    for i, t in enumerate(value):
        if not isinstance(t, dict):
            raise PolicyError(f"{param}[{i}]", "Each tool must be an object.",
                              code="invalid_type")
        name = _tool_name(t)
        server = servers.get(name) if name is not None else None
        if server is not None and _same_tool(t, server):
            continue  # the server's tool, repeated: it stays the server's
        if name is not None and server is not None:
            if tools_locked:
                raise PolicyError(f"{param}[{i}].name",
                                  f"'{name}' is a server tool of the agent profile "
                                  f"'{profile.name}' and tools are locked: a client may not "
                                  "declare a tool of the same name.", code="tool_conflict")
            claimed.add(name)
        own.append(copy.deepcopy(t))
    names = [n for t in own if (n := _tool_name(t)) is not None]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise PolicyError(param, f"The tool name '{dup}' is declared twice.",
                          code="tool_conflict")
    return [s for n, s in servers.items() if n not in claimed] + own


def server_tool_owned(session: Session, profile: Profile, tools: ToolLookup, name: str) -> bool:
    """Does the gateway run ``name`` in this session (a server tool no client replaced)?"""
    if name not in profile.tools:
        return False
    server = tools(name)
    if server is None:
        return False
    declared = [t for t in session.get("tools") or [] if _tool_name(t) == name]
    return bool(declared) and all(_same_tool(t, server) for t in declared)


def apply_update(current: Session, update: Any, profile: Profile, tools: ToolLookup,
                 trust: Trust = TOKEN, formats: FormatRule = "any") -> Session:
    """``current`` with a client's ``session.update`` applied, or :class:`PolicyError`.

    All or nothing: one refused field refuses the whole event (the error says so). A
    transcription session takes updates of its own shape (``type: "transcription"``); the
    locks on the fields it carries (transcription, turn detection, noise reduction,
    ``include``) hold the same."""
    if not isinstance(update, dict):
        raise PolicyError("session", "session must be an object.", code="invalid_type")
    _check_shape(update, session_kind(current))
    locked = trust.locked(profile)
    new = copy.deepcopy(current)
    if "model" in update:
        model = update["model"]
        if not isinstance(model, str) or not profile.matches_model(model):
            raise PolicyError("session.model", "The model is chosen when the session is "
                              f"created; '{str(model)[:64]}' is not this session's model.",
                              code="invalid_value")
    for fpath in FORMAT_PATHS:
        present, value = get_path(update, fpath)
        if present and not same_value(fpath, value, get_path(current, fpath)[1]):
            _set(new, fpath, _check_format(fpath, value, formats))
    for path, lock in LOCKABLE.items():
        present, value = get_path(update, path)
        if not present:
            continue
        dotted = "session." + ".".join(path)
        if path == ("tools",):
            value = merge_tools(value, profile, tools, tools_locked=lock in locked)
        if same_value(path, value, get_path(current, path)[1]):
            continue
        if lock in locked:
            raise PolicyError(dotted, f"'{'.'.join(path)}' is locked by the agent profile "
                              f"'{profile.name}'; the whole update was not applied.")
        if path == ("audio", "input", "turn_detection") and isinstance(value, dict):
            value = _check_turn_detection(value)
        _set(new, path, value)
    return new


def _check_format(path: tuple[str, ...], value: Any, formats: FormatRule) -> Any:
    dotted = "session." + ".".join(path)
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in ("audio/pcm", *_G711):
        raise PolicyError(dotted + ".type", "The audio format type must be 'audio/pcm', "
                          "'audio/pcmu' or 'audio/pcma'.", code="invalid_value")
    if kind == "audio/pcm" and value.get("rate", 24000) != 24000:
        raise PolicyError(dotted + ".rate", "PCM audio is 24000 Hz.", code="invalid_value")
    if formats == "fixed" or (formats == "pcm" and kind != "audio/pcm"):
        why = "WebRTC: the model hears PCM" if formats == "pcm" else "G.711 on a phone line"
        raise PolicyError(dotted, f"This call's transport fixes the audio format ({why}); "
                          "the whole update was not applied.", code="invalid_value")
    return normal_format(value)


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


def without_server_tools(session: Session, profile: Profile, tools: ToolLookup) -> Session:
    """The session as its client sees it: the tools it declared, not the operator's server
    tools (OpenAI returns the session it was given; the server's tools are the operator's).
    The model still calls them, and their calls are seen as at OpenAI."""
    listed = session.get("tools")
    if not isinstance(listed, list) or not profile.tools:
        return session
    out = dict(session)
    out["tools"] = [t for t in listed if not (
        (name := _tool_name(t)) is not None and name in profile.tools and
        (server := tools(name)) is not None and _same_tool(t, server))]
    return out


def for_client(upstream_session: Any, profile: Profile, tools: ToolLookup) -> Session:
    """Rewrite an upstream session object so the client never sees upstream identity (nor
    the server's tools)."""
    out: Session = copy.deepcopy(upstream_session) if isinstance(upstream_session, dict) else {}
    out = without_server_tools(out, profile, tools)
    if session_kind(out) != TRANSCRIPTION:  # a transcription session names no model
        out["model"] = profile.model
    # GA session events carry the config only (openai.types.realtime.SessionCreatedEvent):
    # no upstream id, object tag or secret.
    for k in ("id", "object", "client_secret", "expires_at"):
        out.pop(k, None)
    return out
