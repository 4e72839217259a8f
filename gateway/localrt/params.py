"""``response.create`` parameters: the session's settings, overridden for one response."""

from __future__ import annotations

import copy

from .conversation import Conversation, Item, item_from_client
from .protocol import ClientError, Json, check_keys, get_choice, get_obj, get_str
from .response import ResponseParams
from .sessionconfig import (
    SessionConfig,
    parse_format,
    parse_max_tokens,
    parse_modalities,
    parse_tool_choice,
    parse_tools,
    parse_voice,
)

_KEYS = frozenset({"conversation", "input", "instructions", "output_modalities", "audio",
                   "tools", "tool_choice", "max_output_tokens", "metadata", "prompt",
                   "reasoning", "parallel_tool_calls"})


def response_params(raw: Json | None, session: SessionConfig,
                    conversation: Conversation) -> ResponseParams:
    p = ResponseParams(output_modalities=list(session.output_modalities),
                       output_format=session.output_format, voice=copy.deepcopy(session.voice),
                       speed=session.speed, tools=copy.deepcopy(session.tools),
                       tool_choice=copy.deepcopy(session.tool_choice),
                       max_output_tokens=session.max_output_tokens)
    if raw is None:
        return p
    path = "response"
    check_keys(raw, _KEYS, path)
    p.conversation = get_choice(raw, "conversation", path, ("auto", "none")) or "auto"
    p.instructions = get_str(raw, "instructions", path)
    if "output_modalities" in raw:
        p.output_modalities = parse_modalities(raw["output_modalities"],
                                               "response.output_modalities")
    if (audio := get_obj(raw, "audio", path)) is not None:
        check_keys(audio, {"output"}, "response.audio")
        if (out := get_obj(audio, "output", "response.audio")) is not None:
            check_keys(out, {"format", "voice"}, "response.audio.output")
            if (fmt := get_obj(out, "format", "response.audio.output")) is not None:
                p.output_format = parse_format(fmt, "response.audio.output.format")
            if "voice" in out:
                p.voice = parse_voice(out["voice"], "response.audio.output.voice")
    if "tools" in raw:
        p.tools = parse_tools(raw["tools"], "response.tools")
    if "tool_choice" in raw:
        p.tool_choice = parse_tool_choice(raw["tool_choice"], "response.tool_choice")
    if "max_output_tokens" in raw:
        p.max_output_tokens = parse_max_tokens(raw["max_output_tokens"],
                                               "response.max_output_tokens")
    if (metadata := get_obj(raw, "metadata", path)) is not None:
        if len(metadata) > 16 or not all(isinstance(v, str) for v in metadata.values()):
            raise ClientError("invalid_value", "metadata: at most 16 string values.",
                              "response.metadata")
        p.metadata = dict(metadata)
    if "input" in raw:
        p.input = _input_items(raw["input"], conversation)
    return p


def _input_items(value: object, conversation: Conversation) -> list[Item]:
    """Items (or ``item_reference``s to existing ones) forming an out-of-band context."""
    if not isinstance(value, list):
        raise ClientError("invalid_type", "Invalid type for 'response.input': expected an "
                          "array.", "response.input")
    items: list[Item] = []
    for i, raw in enumerate(value):
        path = f"response.input[{i}]"
        if not isinstance(raw, dict):
            raise ClientError("invalid_type", f"Invalid type for '{path}'.", path)
        if raw.get("type") == "item_reference":
            check_keys(raw, {"type", "id"}, path)
            ref = get_str(raw, "id", path, required=True) or ""
            item = conversation.get(ref)
            if item is None:
                raise ClientError("invalid_value", f"Item with id '{ref}' not found.",
                                  f"{path}.id")
            items.append(item)
        else:
            items.append(item_from_client(raw, conversation))
    return items
