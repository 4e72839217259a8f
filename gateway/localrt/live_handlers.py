"""One function per GPT-Live client event type, in a dispatch table (``LIVE_HANDLERS``).

Each checks its event strictly (an unknown key is ``unknown_parameter``) before acting, so a
refused event changes nothing. ``live_session`` never imports this module: ``server.py`` hands
the table to each ``LiveSession``.
"""

from __future__ import annotations

import base64
import binascii

from . import followup
from .audioio import bytes_per_ms, check_wire_bytes
from .live_backend import response_create, response_item_create
from .live_protocol import ENVELOPE, apply_update, live_event, parse_start, refused
from .live_session import Handler, LiveSession, with_client_id
from .protocol import ClientError, Json, check_keys, client_event_id, get_obj, get_str

#: Input audio goes to the worker in pieces of at most this much (as in the Realtime engine).
_PIECE_MS = 200
_SILENCE_BYTE = {"audio/pcm": b"\x00", "audio/pcmu": b"\xff", "audio/pcma": b"\xd5"}


async def session_start(s: LiveSession, ev: Json) -> None:
    if s.phase != "new":
        raise refused("invalid_request", "The session has already started; session.start is "
                      "sent once, first.")
    check_keys(ev, ENVELOPE | {"session"}, "")
    raw = get_obj(ev, "session", "", required=True)
    assert raw is not None
    await s.start(parse_start(raw), client_event_id(ev))


async def session_update(s: LiveSession, ev: Json) -> None:
    check_keys(ev, ENVELOPE | {"session"}, "")
    raw = get_obj(ev, "session", "", required=True)
    assert raw is not None
    apply_update(raw, s.cfg)
    await s.emit(with_client_id(live_event("session.updated", session=s.resource()),
                                client_event_id(ev)))


def _decode_audio(s: LiveSession, ev: Json) -> bytes:
    b64 = get_str(ev, "audio", "", required=True) or ""
    limit = s.settings.max_append_bytes
    if len(b64) * 3 // 4 > limit + 3:
        raise refused("invalid_value", f"Audio too large: one append may carry at most {limit} "
                      "bytes.", "audio")
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise refused("invalid_value", "Invalid 'audio': not valid base64.", "audio") from None
    if (why := check_wire_bytes(s.cfg.input_format, data)) is not None:
        raise refused("invalid_value", f"Invalid 'audio': {why}", "audio")
    return data


async def input_audio_append(s: LiveSession, ev: Json) -> None:
    check_keys(ev, ENVELOPE | {"audio"}, "")
    fmt = s.cfg.input_format
    data = _decode_audio(s, ev)
    if s.muted:  # Live: a muted input sends silence to the model; the timeline goes on
        data = _SILENCE_BYTE[fmt] * len(data)
    step = bytes_per_ms(fmt) * _PIECE_MS
    for at in range(0, len(data), step):
        piece = data[at:at + step]
        if s.listener.light and len(piece) <= step // 4:
            events = s.listener.push(piece, decode=False)
        else:
            events = await s.in_worker(s.listener.push, piece)
        await s.on_listen_events(events)


async def input_audio_mute(s: LiveSession, ev: Json) -> None:
    check_keys(ev, ENVELOPE, "")
    s.muted = True
    await s.emit(with_client_id(live_event("session.input_audio.muted"), client_event_id(ev)))


async def input_audio_unmute(s: LiveSession, ev: Json) -> None:
    check_keys(ev, ENVELOPE, "")
    s.muted = False
    await s.emit(with_client_id(live_event("session.input_audio.unmuted"),
                                client_event_id(ev)))


def _append_fields(s: LiveSession, ev: Json) -> tuple[str, str | None]:
    check_keys(ev, ENVELOPE | {"content", "delegation_id"}, "")
    content = get_str(ev, "content", "", required=True)
    assert content is not None
    if "delegation_id" not in ev:  # "Required, nullable"
        raise refused("missing_required_parameter", "Missing required parameter: "
                      "'delegation_id' (null for general session context).", "delegation_id")
    return content, get_str(ev, "delegation_id", "")


async def _appended(s: LiveSession, ev: Json, kind: str) -> None:
    now = s.clock()
    await s.emit(with_client_id(live_event(kind, start_ms=now, end_ms=now),
                                client_event_id(ev)))


async def instructions_append(s: LiveSession, ev: Json) -> None:
    content, deleg_id = _append_fields(s, ev)
    s.delegation(deleg_id, "delegation_id")
    await _appended(s, ev, "session.instructions.appended")


async def thinking_append(s: LiveSession, ev: Json) -> None:
    """Silent context: facts in it (a name, an account) are remembered, nothing is said."""
    content, deleg_id = _append_fields(s, ev)
    deleg = s.delegation(deleg_id, "delegation_id")
    s.cancel_acknowledgement()
    s.agent.memory.update(followup.facts(content))
    if deleg is not None:
        deleg.answered = True
    await _appended(s, ev, "session.thinking.appended")


async def commentary_append(s: LiveSession, ev: Json) -> None:
    """Speakable context: a delegation's result is told to the caller (JSON read for its
    facts, text read out), general commentary is said as given."""
    content, deleg_id = _append_fields(s, ev)
    deleg = s.delegation(deleg_id, "delegation_id")
    s.cancel_acknowledgement()
    await _appended(s, ev, "session.commentary.appended")
    if deleg is not None:
        deleg.answered = True
        s.agent.memory.update(followup.facts(content))
        s.say(followup.describe(deleg.call.name, content))
    else:
        s.say(content)


async def session_close(s: LiveSession, ev: Json) -> None:
    check_keys(ev, ENVELOPE, "")
    await s.finish("close_requested", client_event_id(ev))


def _unsupported(what: str) -> Handler:
    async def handler(s: LiveSession, ev: Json) -> None:
        raise ClientError("unsupported_event", f"{what} is not supported by the local engine.",
                          "type")

    return handler


LIVE_HANDLERS: dict[str, Handler] = {
    "session.start": session_start,
    "session.update": session_update,
    "session.input_audio.append": input_audio_append,
    "session.input_audio.mute": input_audio_mute,
    "session.input_audio.unmute": input_audio_unmute,
    "session.instructions.append": instructions_append,
    "session.thinking.append": thinking_append,
    "session.commentary.append": commentary_append,
    "response.item.create": response_item_create,
    "response.create": response_create,
    "session.close": session_close,
    "session.output_audio.fixture.play": _unsupported("Audio fixture playback"),
    "decision.create": _unsupported("Decisions"),
    "decision.item.create": _unsupported("Decisions"),
    "decision.item.delete": _unsupported("Decisions"),
}
