"""GPT-Live sessions under the agent profile: what a Live client may start, update and
append, and what the client and the upstream each see of the session.

Sessions here are Live-shaped (``openai.types.live.SessionConfig``). Live is strict: an
unknown field anywhere is ``unknown_parameter`` with its dotted path, as OpenAI answers it.
Locks (``Profile.locked_fields()``) map onto Live like this: ``instructions`` covers
``session.start.instructions``, developer messages in ``input``,
``session.instructions.append`` and context appends not answering a delegation
(``thinking``/``commentary`` with ``delegation_id: null``); ``voice`` covers
``audio.output.voice``; ``tools`` covers the app's own tools in
``delegation.responses.tools``. The model is always the operator's: the client's ``model``
picks the profile and never reaches the upstream.
"""

from __future__ import annotations

import copy
from typing import Any

from gateway.config import Profile

from .policy import PolicyError, ToolLookup

Session = dict[str, Any]

#: Live session fields (``SessionConfig``); ``client`` is for WebRTC frontends only.
SESSION_KEYS = frozenset({"model", "audio", "client", "delegation", "input", "instructions",
                          "safety_identifier", "store", "triggers"})
_AUDIO_KEYS = frozenset({"format", "output"})
_OUTPUT_KEYS = frozenset({"voice"})
_DELEGATION_KEYS = {"client": frozenset({"type", "acknowledgement_delay_ms"}),
                    "responses": frozenset({"type", "responses", "acknowledgement_delay_ms"}),
                    "decisions": frozenset({"type", "decisions", "acknowledgement_delay_ms"})}
_UPDATE_KEYS = frozenset({"delegation", "triggers"})
#: The one wire format the gateway's WebSocket takes from a Live client: its recorder, levels
#: and phone/WebRTC legs run on PCM16 24 kHz (see docs/live.md, gateway section).
PCM24: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}

#: Client events: type -> (required fields, allowed fields). Envelope: type, event_id.
CLIENT_EVENTS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "session.start": (frozenset({"session"}), frozenset({"session"})),
    "session.update": (frozenset({"session"}), frozenset({"session"})),
    "session.input_audio.append": (frozenset({"audio"}), frozenset({"audio"})),
    "session.input_audio.mute": (frozenset(), frozenset()),
    "session.input_audio.unmute": (frozenset(), frozenset()),
    "session.output_audio.fixture.play": (frozenset({"audio"}), frozenset({"audio"})),
    "session.instructions.append": (frozenset({"content", "delegation_id"}),
                                    frozenset({"content", "delegation_id"})),
    "session.thinking.append": (frozenset({"content", "delegation_id"}),
                                frozenset({"content", "delegation_id"})),
    "session.commentary.append": (frozenset({"content", "delegation_id"}),
                                  frozenset({"content", "delegation_id"})),
    "decision.create": (frozenset(), frozenset()),
    "decision.item.create": (frozenset({"item"}), frozenset({"item"})),
    "decision.item.delete": (frozenset({"item_id"}), frozenset({"item_id"})),
    "response.item.create": (frozenset({"item"}), frozenset({"item"})),
    "response.create": (frozenset(), frozenset()),
    "session.close": (frozenset(), frozenset()),
}
CLIENT_EVENT_TYPES = frozenset(CLIENT_EVENTS)

#: Server event types a Live client may receive (``openai.types.live.ServerEvent``); the
#: gateway drops anything else on its way to a Live client (its own Realtime-era extensions).
SERVER_EVENT_TYPES = frozenset({
    "session.started", "session.updated", "session.closed", "session.usage.updated",
    "session.input_audio.muted", "session.input_audio.unmuted",
    "session.output_audio.fixture.playing", "session.output_audio.fixture.played",
    "session.instructions.appended", "session.thinking.appended",
    "session.commentary.appended", "session.input_audio.append",
    "session.output_audio.delta", "session.input_transcript.delta",
    "session.output_transcript.delta", "session.delegation.created", "response.event",
    "decision.event", "decision.item.created", "decision.item.deleted", "error", "info",
    "transport.dtmf.received", "transport.dtmf.send", "transport.dtmf.sent",
    "transport.ringing", "transport.answered", "transport.failed",
})


def _unknown(path: str) -> PolicyError:
    return PolicyError(path, f"Unknown parameter: '{path}'.", code="unknown_parameter")


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(path, f"Invalid type for '{path}': expected an object.",
                          code="invalid_type")
    return value


def _keys(obj: dict[str, Any], allowed: frozenset[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _unknown(f"{path}.{key}" if path else key)


def check_client_event(event: dict[str, Any]) -> None:
    """The envelope of a known Live client event: required fields present, no others."""
    required, allowed = CLIENT_EVENTS[event["type"]]
    _keys(event, allowed | {"type", "event_id"}, "")
    if "event_id" in event and not isinstance(event["event_id"], str):
        raise PolicyError("event_id", "Invalid type for 'event_id': expected a string.",
                          code="invalid_type")
    for key in sorted(required - set(event)):
        raise PolicyError(key, f"Missing required parameter: '{key}'.",
                          code="missing_required_parameter")


def base_session(profile: Profile) -> Session:
    """The profile's Live session as a client sees it (``model`` is the profile's name)."""
    return {"model": profile.model, "instructions": profile.instructions,
            "audio": {"output": {"voice": profile.voice}}}


def from_realtime(session: Session, profile: Profile) -> Session:
    """A Realtime-shaped session (a phone call's, minted by the Twilio route) as Live."""
    voice = ((session.get("audio") or {}).get("output") or {}).get("voice") or profile.voice
    return {"model": profile.model,
            "instructions": session.get("instructions") or profile.instructions,
            "audio": {"output": {"voice": voice}}}


def _locked(path: str, profile: Profile) -> PolicyError:
    return PolicyError(path, f"'{path}' is locked by the agent profile '{profile.name}' and "
                       "cannot be changed by a client.")


def _check_delegation(value: Any, path: str, profile: Profile, tools: ToolLookup,
                      locked: frozenset[str]) -> dict[str, Any] | None:
    if value is None:
        return None
    deleg = _obj(value, path)
    kind = deleg.get("type")
    if kind not in _DELEGATION_KEYS:
        raise PolicyError(f"{path}.type", f"Invalid value for '{path}.type': expected one of "
                          "client, responses, decisions.", code="invalid_value")
    _keys(deleg, _DELEGATION_KEYS[kind], path)
    if kind != "responses":
        return copy.deepcopy(deleg)
    backend = _obj(deleg.get("responses"), f"{path}.responses")
    out = copy.deepcopy(deleg)
    out["responses"] = dict(backend, tools=merge_tools(backend.get("tools"),
                                                       f"{path}.responses.tools", profile,
                                                       tools, locked))
    return out


def merge_tools(value: Any, path: str, profile: Profile, tools: ToolLookup,
                locked: frozenset[str]) -> list[dict[str, Any]]:
    """The app's Responses tools plus the profile's server tools (the server's definition
    of a server tool wins over what the client described)."""
    own = value if value is not None else []
    if not isinstance(own, list):
        raise PolicyError(path, f"Invalid type for '{path}': expected an array.",
                          code="invalid_type")
    server = [s for s in (tools(n) for n in profile.tools) if s is not None]
    names = {s["name"] for s in server}
    apps = [t for t in own if not (isinstance(t, dict) and t.get("name") in names)]
    if apps and "tools" in locked:
        raise PolicyError(path, f"'{path}' is locked by the agent profile '{profile.name}': "
                          "only the profile's tools may be used.")
    return [*apps, *({k: v for k, v in s.items() if k in
                      ("type", "name", "description", "parameters")} for s in server)]


def apply_start(base: Session, requested: Any, profile: Profile, tools: ToolLookup, *,
                locked: frozenset[str], webrtc: bool) -> Session:
    """The client-visible session of a ``session.start`` (or a WebRTC create / a client
    secret) merged into the profile's, or :class:`PolicyError`."""
    req = _obj(requested, "session")
    _keys(req, SESSION_KEYS, "session")
    out = copy.deepcopy(base)
    if "instructions" in req and req["instructions"] != base.get("instructions"):
        if not isinstance(req["instructions"], str):
            raise PolicyError("session.instructions", "Invalid type for "
                              "'session.instructions': expected a string.", code="invalid_type")
        if "instructions" in locked:
            raise _locked("session.instructions", profile)
        out["instructions"] = req["instructions"]
    if "audio" in req:
        audio = _obj(req["audio"], "session.audio")
        _keys(audio, _OUTPUT_KEYS_BY_TRANSPORT[webrtc], "session.audio")
        if "format" in audio and audio["format"] != PCM24:
            raise PolicyError("session.audio.format", "This gateway takes Live audio as "
                              "{'type': 'audio/pcm', 'rate': 24000}.", code="invalid_value")
        output = _obj(audio.get("output", {}), "session.audio.output")
        _keys(output, _OUTPUT_KEYS, "session.audio.output")
        voice = output.get("voice", profile.voice)
        if voice != profile.voice and "voice" in locked:
            raise _locked("session.audio.output.voice", profile)
        out["audio"] = {"output": {"voice": voice}}
    if "delegation" in req:
        deleg = _check_delegation(req["delegation"], "session.delegation", profile, tools,
                                  locked)
        if deleg is not None:
            out["delegation"] = deleg
    if isinstance(req.get("input"), list) and "instructions" in locked and any(
            isinstance(m, dict) and m.get("role") == "developer" for m in req["input"]):
        raise _locked("session.input", profile)
    for key in ("input", "safety_identifier", "store", "triggers", "client"):
        if key in req:
            if key == "client" and not webrtc:
                raise PolicyError("session.client", "session.client configures a WebRTC "
                                  "frontend's data channel; not accepted on a WebSocket.",
                                  code="invalid_value")
            out[key] = copy.deepcopy(req[key])
    return out


_OUTPUT_KEYS_BY_TRANSPORT = {False: _AUDIO_KEYS, True: frozenset({"output"})}


def apply_update(current: Session, update: Any, profile: Profile, tools: ToolLookup, *,
                 locked: frozenset[str]) -> tuple[Session, Session]:
    """A ``session.update``: (the new client-visible session, the update sent upstream)."""
    upd = _obj(update, "session")
    _keys(upd, _UPDATE_KEYS, "session")
    new = copy.deepcopy(current)
    upstream: Session = {}
    if "delegation" in upd:
        deleg = _obj(upd["delegation"], "session.delegation")
        kind = deleg.get("type")
        current_kind = (current.get("delegation") or {}).get("type", "client")
        if kind != current_kind:
            raise PolicyError("session.delegation.type", "The delegation type cannot change "
                              "after the session started.", code="invalid_value")
        _keys(deleg, _DELEGATION_KEYS[kind], "session.delegation")
        sent = copy.deepcopy(deleg)
        if kind == "responses" and "responses" in deleg:
            backend = _obj(deleg["responses"], "session.delegation.responses")
            if "tools" in backend:
                sent["responses"] = dict(backend, tools=merge_tools(
                    backend["tools"], "session.delegation.responses.tools", profile, tools,
                    locked))
        merged = dict(current.get("delegation") or {"type": "client"})
        for key, value in sent.items():
            merged[key] = (dict(merged.get(key) or {}, **value)
                           if isinstance(value, dict) else value)
        new["delegation"] = merged
        upstream["delegation"] = sent
    if "triggers" in upd:
        new["triggers"] = copy.deepcopy(upd["triggers"])
        upstream["triggers"] = copy.deepcopy(upd["triggers"])
    return new, upstream


def check_append(event: dict[str, Any], profile: Profile, locked: frozenset[str]) -> None:
    """Appends that change what the agent is told (not answers to a delegation) fall under
    the ``instructions`` lock."""
    if "instructions" not in locked:
        return
    etype = event["type"]
    if etype == "session.instructions.append" or event.get("delegation_id") is None:
        raise PolicyError("content", f"'{etype}' changes the agent's instructions, which the "
                          f"agent profile '{profile.name}' locks.")


def for_upstream(session: Session, profile: Profile, wire: dict[str, Any]) -> Session:
    """The ``session.start`` body the upstream gets: the real model, the wire format."""
    out = copy.deepcopy(session)
    out["model"] = profile.upstream_model
    out.pop("client", None)  # the data channel is the gateway's, not the upstream's
    audio = out.setdefault("audio", {})
    audio["format"] = dict(wire)
    return out


def for_client(resource: Any, session: Session, call_id: str, profile: Profile, *,
               webrtc: bool) -> Session:
    """The upstream's ``SessionResource`` as the client sees it: the call's id, the
    profile's model name, the client's own data-channel settings."""
    out: Session = copy.deepcopy(resource) if isinstance(resource, dict) else {}
    out["id"] = call_id
    out["model"] = profile.model
    out.setdefault("status", "active")
    if webrtc:
        (out.get("audio") or {}).pop("format", None)
        if "client" in session:
            out["client"] = copy.deepcopy(session["client"])
    return out
