"""Conversation items, ``response.create`` parameters and response objects, beta <-> GA.

Beta has one flat item object (``type`` message/function_call/function_call_output, every
field optional) whose assistant content is ``text``/``audio``; GA has a union keyed by
``type`` and ``role`` whose assistant content is ``output_text``/``output_audio``
(protocol notes §1.4-§1.5, §1.11-§1.12). Beta ``item_reference`` lived both as an item
type and as a content type inside ``response.create`` input; GA only has the top-level
``{"type": "item_reference", "id"}`` item.

Pure code: no I/O, no asyncio; inputs are never mutated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .dialect_checks import (
    DialectError,
    ErrorCode,
    Json,
    dialect_mismatch,
    expect_dict,
    expect_enum,
    expect_list,
    expect_str,
    join,
    reject_unknown,
    require,
)
from .dialect_fields import (
    Move,
    Walk,
    as_str,
    audio_format_beta_to_ga,
    audio_format_ga_to_beta,
    max_tokens_beta_to_ga,
    modalities_beta_to_ga,
    modalities_ga_to_beta,
    tool_choice_beta_to_ga,
    tools_beta_to_ga,
    translate_fields,
    voice_beta_to_ga,
    voice_ga_to_beta,
)

_ITEM_KEYS = ("id", "type", "object", "status", "role", "content", "call_id", "name",
              "arguments", "output")
_ITEM_COMMON = ("id", "type", "object", "status")
#: The fields each beta item type may set; the flat beta object allowed the others only
#: as nulls.
_ITEM_FIELDS: Mapping[str, tuple[str, ...]] = {
    "message": ("role", "content"),
    "function_call": ("call_id", "name", "arguments"),
    "function_call_output": ("call_id", "output"),
    "item_reference": (),
}
_GA_ONLY_ITEM_TYPES = ("mcp_call", "mcp_list_tools", "mcp_approval_request",
                       "mcp_approval_response")

#: Content types per role, beta name -> GA name.
_CONTENT_BETA_TO_GA: Mapping[str, Mapping[str, str]] = {
    "system": {"input_text": "input_text"},
    "user": {"input_text": "input_text", "input_audio": "input_audio"},
    "assistant": {"text": "output_text", "audio": "output_audio"},
}
_CONTENT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "input_text": ("text",), "text": ("text",),
    "input_audio": ("audio", "transcript"), "audio": ("audio", "transcript"),
    "item_reference": ("id",),
}
_CONTENT_GA_ONLY: Mapping[str, str] = {
    "output_text": "Assistant text content is 'text' in the beta dialect.",
    "output_audio": "Assistant audio content is 'audio' in the beta dialect.",
    "input_image": "The beta dialect has no image input.",
}
_CONTENT_GA_TO_BETA: Mapping[str, str] = {
    "input_text": "input_text", "input_audio": "input_audio",
    "output_text": "text", "output_audio": "audio",
    # content parts of response.content_part.* are already "text"/"audio" in GA
    "text": "text", "audio": "audio",
}


# -- beta -> GA ------------------------------------------------------------------------

def _content_beta_to_ga(part: Any, role: str, path: str, references: bool) -> Json:
    obj = expect_dict(part, path)
    ptype = require(obj, "type", path)
    if ptype in _CONTENT_GA_ONLY:  # before the field check: GA parts have GA-only fields
        raise dialect_mismatch(join(path, "type"), _CONTENT_GA_ONLY[ptype])
    reject_unknown(obj, ("type", "text", "audio", "transcript", "id"), path)
    allowed = list(_CONTENT_BETA_TO_GA[role])
    if references:
        allowed.append("item_reference")
    expect_enum(ptype, allowed, join(path, "type"))
    fields = _CONTENT_FIELDS[ptype]
    out: Json = {"type": _CONTENT_BETA_TO_GA[role].get(ptype, ptype)}
    for key, value in obj.items():
        if key == "type" or value is None:
            continue
        if key not in fields:
            raise DialectError(ErrorCode.UNKNOWN_PARAMETER,
                               f"'{join(path, key)}' is not valid on '{ptype}' content.",
                               join(path, key))
        out[key] = expect_str(value, join(path, key))
    return out


def _message_beta_to_ga(item: Json, base: Json, path: str, references: bool) -> list[Json]:
    role = expect_enum(require(item, "role", path), tuple(_CONTENT_BETA_TO_GA),
                       join(path, "role"))
    content_path = join(path, "content")
    content = expect_list(require(item, "content", path), content_path)
    out: list[Json] = []
    parts: list[Json] = []

    def flush() -> None:
        # Only the first piece of a message split around references keeps the client's id.
        head = base if not out else {k: v for k, v in base.items() if k != "id"}
        out.append({"type": "message", "role": role, "content": list(parts), **head})
        parts.clear()

    for i, raw in enumerate(content):
        part = _content_beta_to_ga(raw, role, join(content_path, i), references)
        if part["type"] == "item_reference":
            if parts:
                flush()
            out.append({"type": "item_reference",
                        "id": require(part, "id", join(content_path, i))})
        else:
            parts.append(part)
    if parts or not out:
        flush()
    return out


def item_beta_to_ga(item: Any, path: str, *, references: bool = False) -> list[Json]:
    """One beta item -> GA items (several only when ``item_reference`` content is split out).

    ``references`` allows ``item_reference`` items and content (``response.create`` input).
    """
    obj = expect_dict(item, path)
    itype = require(obj, "type", path)
    if itype in _GA_ONLY_ITEM_TYPES:
        raise dialect_mismatch(join(path, "type"), "Beta sessions have no MCP items.")
    reject_unknown(obj, _ITEM_KEYS, path)
    allowed_types = [t for t in _ITEM_FIELDS if references or t != "item_reference"]
    expect_enum(itype, allowed_types, join(path, "type"))
    valid = (*_ITEM_COMMON, *_ITEM_FIELDS[itype])
    for key, value in obj.items():
        if value is not None and key not in valid:
            raise DialectError(ErrorCode.UNKNOWN_PARAMETER,
                               f"'{join(path, key)}' is not valid on a '{itype}' item.",
                               join(path, key))
    if itype == "item_reference":
        return [{"type": "item_reference",
                 "id": expect_str(require(obj, "id", path), join(path, "id"))}]
    base: Json = {}
    for key in ("id", "object", "status"):
        if obj.get(key) is not None:
            base[key] = expect_str(obj[key], join(path, key))
    if itype == "message":
        return _message_beta_to_ga(obj, base, path, references)
    out: Json = {"type": itype}
    required = ("name", "arguments") if itype == "function_call" else ("call_id", "output")
    for key in _ITEM_FIELDS[itype]:
        if key in required:
            out[key] = expect_str(require(obj, key, path), join(path, key))
        elif obj.get(key) is not None:
            out[key] = expect_str(obj[key], join(path, key))
    return [{**out, **base}]


def _input_beta_to_ga(value: Any, w: Walk, rel: str) -> list[Json]:
    items: list[Json] = []
    for i, raw in enumerate(expect_list(value, w.param(rel))):
        items.extend(item_beta_to_ga(raw, w.param(f"{rel}[{i}]"), references=True))
    return items


def _metadata(value: Any, w: Walk, rel: str) -> Json:
    meta = expect_dict(value, w.param(rel))
    for key, v in meta.items():
        expect_str(v, w.param(f"{rel}.{key}"))
    return dict(meta)


_RESPONSE_MOVES: Mapping[str, Move] = {
    "conversation": Move("", "conversation", as_str),
    "input": Move("", "input", _input_beta_to_ga),
    "instructions": Move("", "instructions", as_str),
    "metadata": Move("", "metadata", _metadata),
    "modalities": Move("", "output_modalities", modalities_beta_to_ga),
    "max_response_output_tokens": Move("", "max_output_tokens", max_tokens_beta_to_ga),
    "output_audio_format": Move("output", "format", audio_format_beta_to_ga),
    "voice": Move("output", "voice", voice_beta_to_ga),
    "tools": Move("", "tools", tools_beta_to_ga),
    "tool_choice": Move("", "tool_choice", tool_choice_beta_to_ga),
}
#: GA has no sampling temperature, per response or per session.
RESPONSE_IGNORED = ("temperature",)
_RESPONSE_GA_ONLY: Mapping[str, str] = {
    "output_modalities": "Use 'modalities'.",
    "audio": "Use 'voice' and 'output_audio_format'.",
    "max_output_tokens": "Use 'max_response_output_tokens'.",
    "prompt": "The beta dialect has no stored prompts.",
    "reasoning": "The beta dialect has no reasoning setting.",
    "parallel_tool_calls": "The beta dialect has no parallel_tool_calls setting.",
}


def response_params_beta_to_ga(params: Any, path: str = "response") -> tuple[Json, list[str]]:
    """Beta ``response.create`` ``response`` -> (GA params, ignored field names)."""
    w = Walk(path)
    obj = expect_dict(params, path)
    reject_unknown(obj, (*_RESPONSE_MOVES, *RESPONSE_IGNORED), path, _RESPONSE_GA_ONLY)
    return translate_fields(obj, _RESPONSE_MOVES, w, RESPONSE_IGNORED), w.ignored


# -- GA -> beta ------------------------------------------------------------------------

def content_ga_to_beta(part: Any) -> Json | None:
    """A GA content part -> beta, or ``None`` for parts beta cannot carry (images)."""
    if not isinstance(part, dict):
        return None
    beta_type = _CONTENT_GA_TO_BETA.get(str(part.get("type")))
    if beta_type is None:
        return None
    out: Json = {"type": beta_type}
    out.update({k: part[k] for k in ("text", "audio", "transcript") if k in part})
    return out


def item_ga_to_beta(item: Any) -> Json | None:
    """A GA conversation item -> the flat beta item, or ``None`` for MCP and unknown items."""
    if not isinstance(item, dict):
        return None
    itype = item.get("type")
    if itype == "message":
        out: Json = {k: item[k] for k in ("id", "object", "type", "status", "role")
                     if k in item}
        content = [content_ga_to_beta(p) for p in item.get("content") or []]
        out["content"] = [p for p in content if p is not None]
        return out
    if itype == "function_call":
        keys: tuple[str, ...] = ("id", "object", "type", "status", "call_id", "name",
                                 "arguments")
    elif itype == "function_call_output":
        keys = ("id", "object", "type", "status", "call_id", "output")
    else:
        return None
    return {k: item[k] for k in keys if k in item}


_USAGE_DETAILS: Mapping[str, tuple[str, ...]] = {
    "input_token_details": ("audio_tokens", "cached_tokens", "text_tokens"),
    "output_token_details": ("audio_tokens", "text_tokens"),
}


def usage_ga_to_beta(usage: Any) -> Any:
    if not isinstance(usage, dict):
        return usage
    out: Json = {k: usage[k] for k in ("total_tokens", "input_tokens", "output_tokens")
                 if k in usage}
    for key, fields in _USAGE_DETAILS.items():
        details = usage.get(key)
        if isinstance(details, dict):
            out[key] = {k: details[k] for k in fields if k in details}
        elif key in usage:
            out[key] = details
    return out


def response_ga_to_beta(response: Any) -> Json:
    """A GA response object (``response.created``/``.done``) -> the beta one."""
    if not isinstance(response, dict):
        return {}
    out: Json = {k: response[k] for k in ("id", "object", "conversation_id", "status",
                                          "status_details", "metadata", "max_output_tokens")
                 if k in response}
    if "output" in response:
        items = [item_ga_to_beta(i) for i in response.get("output") or []]
        out["output"] = [i for i in items if i is not None]
    if "usage" in response:
        out["usage"] = usage_ga_to_beta(response["usage"])
    modalities = modalities_ga_to_beta(response.get("output_modalities"))
    if modalities is not None:
        out["modalities"] = modalities
    audio = response.get("audio")
    audio_out = audio.get("output") if isinstance(audio, dict) else None
    if isinstance(audio_out, dict):
        fmt = audio_format_ga_to_beta(audio_out.get("format"))
        if fmt is not None:
            out["output_audio_format"] = fmt
        voice = voice_ga_to_beta(audio_out.get("voice"))
        if voice is not None:
            out["voice"] = voice
    return out


__all__ = [
    "RESPONSE_IGNORED", "content_ga_to_beta", "item_beta_to_ga", "item_ga_to_beta",
    "response_ga_to_beta", "response_params_beta_to_ga", "usage_ga_to_beta",
]
