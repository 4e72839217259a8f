"""The conversation: ordered items, their GA JSON shapes, and truncation to what was heard."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from .protocol import ClientError, Json, check_keys, get_choice, get_str, new_id

ItemType = Literal["message", "function_call", "function_call_output"]
Status = Literal["completed", "incomplete", "in_progress"]

_CONTENT_TYPES = {
    "user": ("input_text", "input_audio", "input_image"),
    "system": ("input_text",),
    "assistant": ("output_text", "output_audio"),
}


@dataclass(slots=True)
class Segment:
    """A sentence of assistant audio and where it sits in the item's audio, in ms."""

    text: str
    start_ms: float
    end_ms: float


@dataclass(slots=True)
class Item:
    id: str
    type: ItemType
    role: str | None = None
    status: Status = "completed"
    content: list[Json] = field(default_factory=list)
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None
    # Assistant audio bookkeeping, for conversation.item.truncate.
    segments: list[Segment] = field(default_factory=list)
    audio_ms: float = 0.0
    # Base64 audio of a client-created input_audio part, waiting to be transcribed.
    input_audio_b64: str | None = None
    # What the recogniser heard, whether or not the session asked for transcription events.
    heard: str | None = None

    def to_json(self) -> Json:
        out: Json = {"id": self.id, "object": "realtime.item", "type": self.type,
                     "status": self.status}
        if self.type == "message":
            out["role"] = self.role
            out["content"] = copy.deepcopy(self.content)
        elif self.type == "function_call":
            out.update(call_id=self.call_id, name=self.name, arguments=self.arguments or "")
        else:
            out.update(call_id=self.call_id, output=self.output or "")
        return out

    def text(self) -> str:
        """What a message says: typed text or transcript, content parts joined."""
        if self.heard is not None:
            return self.heard
        parts = [c.get("text") or c.get("transcript") or "" for c in self.content]
        return " ".join(p for p in parts if p).strip()


class Conversation:
    def __init__(self) -> None:
        self.id = new_id("conv")
        self.items: list[Item] = []

    def get(self, item_id: str) -> Item | None:
        return next((i for i in self.items if i.id == item_id), None)

    def last_id(self) -> str | None:
        return self.items[-1].id if self.items else None

    def add(self, item: Item, previous_item_id: str | None = None) -> str | None:
        """Insert after ``previous_item_id`` ("root" = first; None = at the end).

        Returns the id of the item now before it."""
        if previous_item_id is None:
            prev = self.last_id()
            self.items.append(item)
            return prev
        if previous_item_id == "root":
            self.items.insert(0, item)
            return None
        for i, existing in enumerate(self.items):
            if existing.id == previous_item_id:
                self.items.insert(i + 1, item)
                return previous_item_id
        raise ClientError("invalid_value", f"Item with id '{previous_item_id}' not found.",
                          "previous_item_id")

    def delete(self, item_id: str) -> bool:
        item = self.get(item_id)
        if item is None:
            return False
        self.items.remove(item)
        return True

    def function_name(self, call_id: str) -> str | None:
        for item in self.items:
            if item.type == "function_call" and item.call_id == call_id:
                return item.name
        return None


def truncate(item: Item, audio_end_ms: int) -> None:
    """Cut an assistant audio item to its first ``audio_end_ms``: whole sentences heard, plus
    the words of the sentence in progress in proportion to its audio heard."""
    kept: list[str] = []
    for seg in item.segments:
        if audio_end_ms >= seg.end_ms:
            kept.append(seg.text)
            continue
        if audio_end_ms > seg.start_ms:
            words = seg.text.split()
            share = (audio_end_ms - seg.start_ms) / max(seg.end_ms - seg.start_ms, 1.0)
            n = int(len(words) * share)
            if n:
                kept.append(" ".join(words[:n]))
        break
    transcript = " ".join(kept)
    for part in item.content:
        if part.get("type") == "output_audio":
            part["transcript"] = transcript
    item.segments = [s for s in item.segments if s.end_ms <= audio_end_ms]
    item.audio_ms = float(audio_end_ms)


def item_from_client(raw: Json, conversation: Conversation) -> Item:
    """A ``conversation.item.create`` item, validated (ClientError if not acceptable)."""
    path = "item"
    kind = get_choice(raw, "type", path, ("message", "function_call", "function_call_output"),
                      required=True)
    item_id = get_str(raw, "id", path) or new_id("item")
    if conversation.get(item_id) is not None:
        raise ClientError("invalid_value", f"Item with id '{item_id}' already exists.", "item.id")
    common = {"id", "type", "object", "status"}
    if kind == "message":
        check_keys(raw, common | {"role", "content"}, path)
        role = get_choice(raw, "role", path, ("user", "assistant", "system"), required=True)
        content = raw.get("content")
        if not isinstance(content, list) or not content:
            raise ClientError("invalid_value", "A message needs a non-empty 'content' array.",
                              "item.content")
        parts = [_content_part(c, f"item.content[{i}]", str(role)) for i, c in enumerate(content)]
        audio = next((c["audio"] for c in content if isinstance(c, dict)
                      and c.get("type") == "input_audio" and c.get("audio")
                      and not c.get("transcript")), None)
        return Item(item_id, "message", role=role, content=parts, input_audio_b64=audio)
    if kind == "function_call":
        check_keys(raw, common | {"call_id", "name", "arguments"}, path)
        return Item(item_id, "function_call",
                    call_id=get_str(raw, "call_id", path) or new_id("call"),
                    name=get_str(raw, "name", path, required=True),
                    arguments=get_str(raw, "arguments", path) or "")
    check_keys(raw, common | {"call_id", "output"}, path)
    call_id = get_str(raw, "call_id", path, required=True)
    output = get_str(raw, "output", path, required=True)
    if call_id is None or conversation.function_name(call_id) is None:
        raise ClientError("invalid_value", f"No function call found with call_id '{call_id}'.",
                          "item.call_id")
    return Item(item_id, "function_call_output", call_id=call_id, output=output)


def _content_part(raw: Any, path: str, role: str) -> Json:
    if not isinstance(raw, dict):
        raise ClientError("invalid_type", f"Invalid type for '{path}': expected an object.", path)
    allowed = _CONTENT_TYPES[role]
    kind = get_choice(raw, "type", path, allowed, required=True)
    check_keys(raw, {"type", "text", "audio", "transcript", "image_url", "detail"}, path)
    part: Json = {"type": kind}
    if kind in ("input_text", "output_text"):
        part["text"] = get_str(raw, "text", path, required=True)
    elif kind in ("input_audio", "output_audio"):
        get_str(raw, "audio", path)  # kept aside: items never echo audio bytes
        part["transcript"] = get_str(raw, "transcript", path)
    else:
        part["image_url"] = get_str(raw, "image_url", path, required=True)
        if (detail := get_choice(raw, "detail", path, ("auto", "low", "high"))) is not None:
            part["detail"] = detail
    return part
