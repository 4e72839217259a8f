"""Field-level converters between the beta and GA session/response shapes (§1.6-§1.8).

Beta keeps audio settings flat (``input_audio_format: "pcm16"``, ``voice``,
``turn_detection``); GA nests them under ``audio.input`` / ``audio.output`` with format
objects. A :class:`Move` table says where each beta field goes and how its value is
converted; :func:`translate_fields` applies such a table. Beta -> GA converters validate
(a beta client must get errors that name *its* fields); GA -> beta converters trust their
input and only drop what beta cannot express.

Pure code: no I/O, no asyncio. Inputs are never mutated; containers passed through from a
client (tools, tracing) are deep-copied so policy code may edit the result.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .dialect_checks import (
    DialectError,
    ErrorCode,
    Json,
    check_kind,
    dialect_mismatch,
    expect_dict,
    expect_enum,
    expect_list,
    expect_str,
    join,
    reject_unknown,
    require,
)

BETA_AUDIO_FORMATS = ("pcm16", "g711_ulaw", "g711_alaw")
_GA_FORMAT_BY_BETA: Mapping[str, Json] = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}
_BETA_FORMAT_BY_GA_TYPE: Mapping[str, str] = {
    "audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw",
}


@dataclass
class Walk:
    """Where a translation is in its input: the error-path prefix and what it ignored."""

    prefix: str
    ignored: list[str] = field(default_factory=list)

    def param(self, rel: str) -> str:
        """The error path of ``rel`` (a path relative to the translated object)."""
        return join(self.prefix, rel) if rel else self.prefix

    def ignore(self, rel: str) -> None:
        self.ignored.append(rel)


Converter = Callable[[Any, Walk, str], Any]


@dataclass(frozen=True)
class Move:
    """Where a beta field goes in GA: ``section`` "" is top level, else ``audio.<section>``."""

    section: str
    name: str
    convert: Converter
    #: An explicit ``null`` is meaningful (it turns the feature off) and is kept.
    nullable: bool = False


def translate_fields(obj: Json, table: Mapping[str, Move], w: Walk,
                     ignored: Collection[str] = ()) -> Json:
    """Apply ``table`` to every key of ``obj`` (unknown keys must be rejected before)."""
    out: Json = {}
    audio: dict[str, Json] = {}
    for key, value in obj.items():
        if key in ignored:
            w.ignore(key)
            continue
        move = table[key]
        if value is None and not move.nullable:
            continue  # beta clients send nulls for unset fields; GA gives them no meaning
        converted = None if value is None else move.convert(value, w, key)
        if move.section:
            audio.setdefault(move.section, {})[move.name] = converted
        else:
            out[move.name] = converted
    if audio:
        out["audio"] = audio
    return out


# -- field converters (beta -> GA) -----------------------------------------------------

def as_str(value: Any, w: Walk, rel: str) -> str:
    return expect_str(value, w.param(rel))


def as_number(value: Any, w: Walk, rel: str) -> Any:
    check_kind(value, "number", w.param(rel))
    return value


def as_copy(kind: str) -> Converter:
    def convert(value: Any, w: Walk, rel: str) -> Any:
        check_kind(value, kind, w.param(rel))
        return copy.deepcopy(value)
    return convert


def audio_format_beta_to_ga(value: Any, w: Walk, rel: str) -> Json:
    if isinstance(value, dict):
        raise dialect_mismatch(w.param(rel), "Beta audio formats are the strings 'pcm16', "
                                             "'g711_ulaw' and 'g711_alaw'.")
    return dict(_GA_FORMAT_BY_BETA[expect_enum(value, BETA_AUDIO_FORMATS, w.param(rel))])


def voice_beta_to_ga(value: Any, w: Walk, rel: str) -> str:
    if isinstance(value, dict):
        raise dialect_mismatch(w.param(rel), "Beta voices are plain names such as 'alloy'.")
    return expect_str(value, w.param(rel))


def modalities_beta_to_ga(value: Any, w: Walk, rel: str) -> list[str]:
    items = expect_list(value, w.param(rel))
    if not items:
        raise DialectError(ErrorCode.INVALID_VALUE,
                           f"'{w.param(rel)}' must list at least one modality.", w.param(rel))
    for i, item in enumerate(items):
        expect_enum(item, ("text", "audio"), w.param(f"{rel}[{i}]"))
    # GA allows one output modality: audio output always carries its transcript.
    return ["audio"] if "audio" in items else ["text"]


def max_tokens_beta_to_ga(value: Any, w: Walk, rel: str) -> int | str:
    if value == "inf":
        return "inf"
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise DialectError(ErrorCode.INVALID_TYPE,
                       f"Invalid type for '{w.param(rel)}': expected an integer or 'inf'.",
                       w.param(rel))


_VAD_KINDS: Mapping[str, str] = {
    "threshold": "number", "prefix_padding_ms": "int", "silence_duration_ms": "int",
    "create_response": "bool", "interrupt_response": "bool", "eagerness": "str",
}
#: The beta type held every VAD knob on one object; GA splits the union by ``type``.
_VAD_FIELDS: Mapping[str, Collection[str]] = {
    "server_vad": ("threshold", "prefix_padding_ms", "silence_duration_ms",
                   "create_response", "interrupt_response"),
    "semantic_vad": ("eagerness", "create_response", "interrupt_response"),
}
_VAD_GA_ONLY = {"idle_timeout_ms": "The beta dialect has no idle timeout."}


def turn_detection_beta_to_ga(value: Any, w: Walk, rel: str) -> Json:
    td = expect_dict(value, w.param(rel))
    reject_unknown(td, ("type", *_VAD_KINDS), w.param(rel), _VAD_GA_ONLY)
    # The beta server treated a turn_detection object without a type as server VAD.
    vad = td.get("type") or "server_vad"
    expect_enum(vad, tuple(_VAD_FIELDS), w.param(f"{rel}.type"))
    out: Json = {"type": vad}
    for key, kind in _VAD_KINDS.items():
        knob = td.get(key)
        if knob is None:
            continue
        check_kind(knob, kind, w.param(f"{rel}.{key}"))
        if key == "eagerness":
            expect_enum(knob, ("low", "medium", "high", "auto"), w.param(f"{rel}.{key}"))
        if key in _VAD_FIELDS[vad]:
            out[key] = knob
        else:
            w.ignore(f"{rel}.{key}")
    return out


def transcription_beta_to_ga(value: Any, w: Walk, rel: str) -> Json:
    tr = expect_dict(value, w.param(rel))
    reject_unknown(tr, ("model", "language", "prompt"), w.param(rel), {
        "languages": "Use 'language'.", "keywords": "Use 'prompt'.",
        "delay": "The beta dialect has no transcription delay setting."})
    out: Json = {}
    for key in ("model", "language", "prompt"):
        if tr.get(key) is not None:
            out[key] = expect_str(tr[key], w.param(f"{rel}.{key}"))
    return out


def noise_reduction_beta_to_ga(value: Any, w: Walk, rel: str) -> Json:
    nr = expect_dict(value, w.param(rel))
    reject_unknown(nr, ("type",), w.param(rel),
                   {"strength": "The beta dialect has no noise-reduction strength."})
    if nr.get("type") is None:
        return {}
    return {"type": expect_enum(nr["type"], ("near_field", "far_field"),
                                w.param(f"{rel}.type"))}


def tools_beta_to_ga(value: Any, w: Walk, rel: str) -> list[Json]:
    tools: list[Json] = []
    for i, raw in enumerate(expect_list(value, w.param(rel))):
        path = f"{rel}[{i}]"
        tool = expect_dict(raw, w.param(path))
        if tool.get("type") == "mcp":
            raise dialect_mismatch(w.param(f"{path}.type"),
                                   "Beta sessions support function tools only.")
        reject_unknown(tool, ("type", "name", "description", "parameters"), w.param(path))
        if tool.get("type") is not None:
            expect_enum(tool["type"], ("function",), w.param(f"{path}.type"))
        out: Json = {"type": "function",
                     "name": expect_str(require(tool, "name", w.param(path)),
                                        w.param(f"{path}.name"))}
        if tool.get("description") is not None:
            out["description"] = expect_str(tool["description"], w.param(f"{path}.description"))
        if tool.get("parameters") is not None:
            out["parameters"] = copy.deepcopy(
                expect_dict(tool["parameters"], w.param(f"{path}.parameters")))
        tools.append(out)
    return tools


def tool_choice_beta_to_ga(value: Any, w: Walk, rel: str) -> str | Json:
    param = w.param(rel)
    if isinstance(value, str):
        return expect_enum(value, ("auto", "none", "required"), param)
    if isinstance(value, dict):
        if value.get("type") == "mcp":
            raise dialect_mismatch(join(param, "type"), "Beta sessions have no MCP tools.")
        # Beta-era code forced a function both as {"type","function":{"name"}} (the beta
        # docstring) and as {"type","name"} (the Responses shape): accept either.
        fn = value.get("function")
        name = fn.get("name") if isinstance(fn, dict) else value.get("name")
        if value.get("type") == "function" and isinstance(name, str) and name:
            return {"type": "function", "name": name}
    raise DialectError(
        ErrorCode.INVALID_VALUE,
        f"Invalid value for '{param}': expected 'auto', 'none', 'required' or "
        "{\"type\": \"function\", \"function\": {\"name\": ...}}.", param)


def tracing_beta_to_ga(value: Any, w: Walk, rel: str) -> Any:
    if value == "auto":
        return "auto"
    tracing = expect_dict(value, w.param(rel))
    reject_unknown(tracing, ("workflow_name", "group_id", "metadata"), w.param(rel))
    return copy.deepcopy(tracing)


# -- GA -> beta ----------------------------------------------------------------------

def dict_or_empty(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def audio_format_ga_to_beta(value: Any) -> str | None:
    if isinstance(value, str) and value in BETA_AUDIO_FORMATS:
        return value
    if not isinstance(value, dict):
        return None
    # A format object without a type is GA's default, 24 kHz PCM.
    return _BETA_FORMAT_BY_GA_TYPE.get(value.get("type") or "audio/pcm")


def modalities_ga_to_beta(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    return ["text", "audio"] if "audio" in value else ["text"]


def voice_ga_to_beta(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])  # a GA custom voice {id}; beta voices were plain strings
    return None


def turn_detection_ga_to_beta(value: Any, *, transcription: bool = False) -> Json | None:
    if not isinstance(value, dict):
        return None
    vad = value.get("type")
    if transcription:  # the beta transcription session type kept only these
        keys: Collection[str] = ("threshold", "prefix_padding_ms", "silence_duration_ms")
    else:
        keys = _VAD_FIELDS.get(str(vad), _VAD_FIELDS["server_vad"])
    out: Json = {"type": vad} if vad is not None else {}
    out.update({k: value[k] for k in keys if k in value})
    return out


def transcription_ga_to_beta(value: Any) -> Json | None:
    if not isinstance(value, dict):
        return None
    return {k: value[k] for k in ("model", "language", "prompt") if k in value}


def noise_reduction_ga_to_beta(value: Any) -> Json | None:
    if not isinstance(value, dict):
        return None
    return {"type": value["type"]} if "type" in value else {}


def tools_ga_to_beta(value: Any) -> list[Json]:
    """Function tools only: beta sessions cannot hold MCP tools."""
    if not isinstance(value, list):
        return []
    return [{k: tool[k] for k in ("type", "name", "description", "parameters") if k in tool}
            for tool in value
            if isinstance(tool, dict) and tool.get("type") in (None, "function")]


def tool_choice_ga_to_beta(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        # Beta types tool_choice as a string; a forced function or MCP tool is echoed as
        # "required", which keeps "the model must call a tool" and loses which one.
        return "required"
    return None


__all__ = [
    "BETA_AUDIO_FORMATS", "Converter", "Move", "Walk", "as_copy", "as_number", "as_str",
    "audio_format_beta_to_ga", "audio_format_ga_to_beta", "dict_or_empty",
    "max_tokens_beta_to_ga", "modalities_beta_to_ga", "modalities_ga_to_beta",
    "noise_reduction_beta_to_ga", "noise_reduction_ga_to_beta", "tool_choice_beta_to_ga",
    "tool_choice_ga_to_beta", "tools_beta_to_ga", "tools_ga_to_beta", "tracing_beta_to_ga",
    "transcription_beta_to_ga", "transcription_ga_to_beta", "translate_fields",
    "turn_detection_beta_to_ga", "turn_detection_ga_to_beta", "voice_beta_to_ga",
    "voice_ga_to_beta",
]
