"""Client event handlers, one function per GA event type, in a dispatch table."""

from __future__ import annotations

import base64
import binascii

import numpy as np

from .asr import Transcript
from .audioio import InputDecoder, bytes_per_ms, check_wire_bytes
from .conversation import item_from_client, truncate
from .params import response_params
from .protocol import (
    ClientError,
    Json,
    check_keys,
    get_int,
    get_obj,
    get_str,
    new_id,
    server_event,
)
from .session import Handler, Session
from .sessionconfig import WireFormat

#: Input audio goes to the worker in pieces of at most this much, so one huge append never
#: holds the GIL (pocketsphinx keeps it while decoding) for long.
_PIECE_MS = 200


async def session_update(s: Session, ev: Json) -> None:
    check_keys(ev, {"type", "event_id", "session"}, "")
    raw = get_obj(ev, "session", "", required=True)
    assert raw is not None
    s.config = s.config.updated(raw)
    s.configured = True
    await s.in_worker(s.listener.configure, s.config.input_format, s.config.turn_detection)
    await s.emit(server_event("session.updated", session=s.config.to_json()))


def _decode_audio(s: Session, b64: str, param: str) -> bytes:
    limit = s.settings.max_append_bytes
    if len(b64) * 3 // 4 > limit + 3:
        raise ClientError("invalid_value", f"Audio too large: one append may carry at most "
                          f"{limit} bytes (15 MiB).", param)
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError("invalid_value", "Invalid 'audio': not valid base64.", param) from None
    if len(data) > limit:
        raise ClientError("invalid_value", f"Audio too large: {len(data)} bytes in one append; "
                          f"the limit is {limit} bytes (15 MiB).", param)
    if (why := check_wire_bytes(s.config.input_format, data)) is not None:
        raise ClientError("invalid_value", f"Invalid 'audio': {why}", param)
    return data


async def input_audio_buffer_append(s: Session, ev: Json) -> None:
    check_keys(ev, {"type", "event_id", "audio"}, "")
    data = _decode_audio(s, get_str(ev, "audio", "", required=True) or "", "audio")
    step = bytes_per_ms(s.config.input_format) * _PIECE_MS
    for at in range(0, len(data), step):
        piece = data[at:at + step]
        # Between turns only silero runs: handing each 20 ms to a thread cost more (thread
        # wake-ups, measured ~2 % of a core per stream) than the work itself.
        if s.listener.light and len(piece) <= step // 4:
            events = s.listener.push(piece, decode=False)
        else:
            events = await s.in_worker(s.listener.push, piece)
        await s.on_listen_events(events)


async def input_audio_buffer_commit(s: Session, ev: Json) -> None:
    check_keys(ev, {"type", "event_id"}, "")
    buffered = s.listener.buffered_ms()
    got = await s.in_worker(s.listener.commit)
    if got is None:
        raise ClientError("input_audio_buffer_commit_empty",
                          "Error committing input audio buffer: buffer too small. Expected at "
                          f"least 100ms of audio, but buffer only has {buffered}ms of audio.")
    item_id = s.speech_item_id or new_id("item")
    s.speech_item_id = None
    await s.commit_utterance(item_id, buffered, got, auto_response=False)


async def input_audio_buffer_clear(s: Session, ev: Json) -> None:
    check_keys(ev, {"type", "event_id"}, "")
    await s.in_worker(s.listener.clear)
    s.speech_item_id = None
    await s.emit(server_event("input_audio_buffer.cleared"))


async def conversation_item_create(s: Session, ev: Json) -> None:
    check_keys(ev, {"type", "event_id", "item", "previous_item_id"}, "")
    raw = get_obj(ev, "item", "", required=True)
    assert raw is not None
    previous = get_str(ev, "previous_item_id", "")
    item = item_from_client(raw, s.conversation)
    if item.input_audio_b64:
        data = _decode_audio(s, item.input_audio_b64, "item.content.audio")
        fmt = s.config.input_format
        transcript = await s.in_worker(_transcribe_clip, s, data, fmt)
        item.heard = transcript.text
        for part in item.content:
            if part.get("type") == "input_audio" and part.get("transcript") is None:
                part["transcript"] = transcript.text
    prev = s.conversation.add(item, previous)
    await s.emit(server_event("conversation.item.added", previous_item_id=prev,
                              item=item.to_json()))
    await s.emit(server_event("conversation.item.done", previous_item_id=prev,
                              item=item.to_json()))


def _transcribe_clip(s: Session, data: bytes, fmt: WireFormat) -> Transcript:
    samples = InputDecoder(fmt).decode(data)
    rec = s.engine.asr.recognizer()
    rec.start()
    rec.feed(np.asarray(samples, dtype=np.int16))
    return s.engine.asr.finalize(rec.finish())


def _item_param(s: Session, ev: Json) -> str:
    item_id = get_str(ev, "item_id", "", required=True) or ""
    if s.conversation.get(item_id) is None:
        raise ClientError("invalid_value", f"Item with item_id '{item_id}' not found.",
                          "item_id")
    return item_id


async def conversation_item_retrieve(s: Session, ev: Json) -> None:
    check_keys(ev, {"type", "event_id", "item_id"}, "")
    item = s.conversation.get(_item_param(s, ev))
    assert item is not None
    await s.emit(server_event("conversation.item.retrieved", item=item.to_json()))


async def conversation_item_delete(s: Session, ev: Json) -> None:
    check_keys(ev, {"type", "event_id", "item_id"}, "")
    item_id = _item_param(s, ev)
    s.conversation.delete(item_id)
    await s.emit(server_event("conversation.item.deleted", item_id=item_id))


async def conversation_item_truncate(s: Session, ev: Json) -> None:
    check_keys(ev, {"type", "event_id", "item_id", "content_index", "audio_end_ms"}, "")
    index = get_int(ev, "content_index", "", required=True, minimum=0)
    end_ms = get_int(ev, "audio_end_ms", "", required=True, minimum=0)
    assert index is not None and end_ms is not None
    item = s.conversation.get(_item_param(s, ev))
    assert item is not None
    if item.type != "message" or item.role != "assistant":
        raise ClientError("invalid_value", "Only assistant messages can be truncated.",
                          "item_id")
    if index >= len(item.content) or item.content[index].get("type") != "output_audio":
        raise ClientError("invalid_value", f"Item {item.id} has no audio at content_index "
                          f"{index}.", "content_index")
    if s.active is not None and item.status == "in_progress":
        # Truncating what is still being said: stop saying it first.
        run = s.active
        run.cancel("client_cancelled")
        await run.wait()
    if end_ms > item.audio_ms + 1:
        raise ClientError("invalid_value", f"audio_end_ms ({end_ms}) is longer than the "
                          f"item's audio ({int(item.audio_ms)} ms).", "audio_end_ms")
    truncate(item, end_ms)
    await s.emit(server_event("conversation.item.truncated", item_id=item.id,
                              content_index=index, audio_end_ms=end_ms))


async def response_create(s: Session, ev: Json) -> None:
    check_keys(ev, {"type", "event_id", "response"}, "")
    raw = get_obj(ev, "response", "")
    if s.active is not None:
        raise ClientError("conversation_already_has_active_response",
                          "Conversation already has an active response in progress: "
                          f"{s.active.id}. Wait until the response is finished before creating "
                          "a new one.")
    await s.start_response(response_params(raw, s.config, s.conversation))


async def response_cancel(s: Session, ev: Json) -> None:
    check_keys(ev, {"type", "event_id", "response_id"}, "")
    response_id = get_str(ev, "response_id", "")
    run = s.active
    if run is None or (response_id is not None and response_id != run.id):
        raise ClientError("response_cancel_not_active",
                          "Cancellation failed: no active response found.")
    run.cancel("client_cancelled")
    await run.wait()


async def output_audio_buffer_clear(s: Session, ev: Json) -> None:
    raise ClientError("invalid_value", "output_audio_buffer.clear is only supported over "
                      "WebRTC and SIP; over a WebSocket the client owns playback.", "type")


HANDLERS: dict[str, Handler] = {
    "session.update": session_update,
    "input_audio_buffer.append": input_audio_buffer_append,
    "input_audio_buffer.commit": input_audio_buffer_commit,
    "input_audio_buffer.clear": input_audio_buffer_clear,
    "conversation.item.create": conversation_item_create,
    "conversation.item.retrieve": conversation_item_retrieve,
    "conversation.item.delete": conversation_item_delete,
    "conversation.item.truncate": conversation_item_truncate,
    "response.create": response_create,
    "response.cancel": response_cancel,
    "output_audio_buffer.clear": output_audio_buffer_clear,
}
