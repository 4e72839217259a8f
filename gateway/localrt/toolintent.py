"""Any declared tool, by its JSON schema: which tool an utterance asks for (the words of its
name and description), its arguments (enum values, numbers, dates, times, names said), the
``required`` ones still missing (the agent asks for them, one at a time), and a sentence
saying what the tools can do. The tutorial's two tools keep their hand-made rules in
``agent``; this covers every other tool a client or the gateway declares. Pure functions.
"""

from __future__ import annotations

import re
from typing import Any

from .spoken import digit_string, tokens

Json = dict[str, Any]

_STOP = frozenset({"a", "an", "the", "of", "for", "to", "and", "or", "by", "with", "in", "on",
                   "is", "it", "this", "that", "get", "set", "do", "use", "tool", "function",
                   "given", "from", "your", "my", "me", "i", "you", "can", "please", "what",
                   "when", "at", "be", "as", "current", "customer", "caller", "call"})


def _stem(word: str) -> str:
    for suffix in ("ing", "es", "s", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[:-len(suffix)]
    return word


def _keywords(text: str) -> set[str]:
    parts = re.sub(r"([a-z])([A-Z])", r"\1 \2", text).replace("_", " ").lower()
    return {_stem(w) for w in re.findall(r"[a-z]+", parts) if w not in _STOP and len(w) > 2}


def properties(tool: Json) -> dict[str, Json]:
    params = tool.get("parameters")
    props = params.get("properties") if isinstance(params, dict) else None
    return {k: v for k, v in props.items() if isinstance(v, dict)} \
        if isinstance(props, dict) else {}


def required(tool: Json) -> list[str]:
    params = tool.get("parameters")
    req = params.get("required") if isinstance(params, dict) else None
    return [r for r in req if isinstance(r, str)] if isinstance(req, list) else []


def match(text: str, tools: dict[str, Json]) -> str | None:
    """The tool whose name best matches the utterance (a name word must be said; description
    words break ties), or None."""
    # A clitic is not part of the word: "the weather's lovely" speaks of the weather.
    said = {_stem(w.split("'", 1)[0]) for w in tokens(text)}
    best: tuple[int, int, str] | None = None
    for name, tool in tools.items():
        name_hits = len(_keywords(name) & said)
        if not name_hits:
            continue
        desc_hits = len(_keywords(str(tool.get("description", ""))) & said)
        score = (name_hits, desc_hits, name)
        if best is None or score[:2] > best[:2]:
            best = score
    return best[2] if best else None


def value_for(prop: str, schema: Json, text: str, whole: bool) -> Any:
    """A value for one property out of an utterance; ``whole`` when the utterance answers a
    question about this very property (then a bare string answer is the value)."""
    words = tokens(text)
    enum = schema.get("enum")
    if isinstance(enum, list):
        for option in enum:
            if isinstance(option, str) and _keywords(option) and \
                    _keywords(option) <= {_stem(w) for w in words}:
                return option
        return None
    kind = schema.get("type")
    if kind in ("integer", "number"):
        digits = digit_string(words) or next((w for w in words if w.isdigit()), "")
        if not digits:
            from .spoken import _number  # small cardinals ("three people")
            for i in range(len(words)):
                got = _number(words, i)
                if got:
                    return got[0]
            return None
        return int(digits) if kind == "integer" else float(digits)
    if kind == "boolean":
        if {"yes", "true", "yeah", "sure"} & set(words):
            return True
        if {"no", "false", "nope"} & set(words):
            return False
        return None
    if whole and text.strip():
        return text.strip().rstrip(".!?")
    return None


def describe(name: str, tool: Json) -> str:
    """What a tool does, as a phrase that follows "I can"."""
    desc = str(tool.get("description", "")).strip()
    first = re.split(r"(?<=[.!?])\s", desc)[0].rstrip(".!?") if desc else ""
    if first and len(first) <= 80:
        return first[0].lower() + first[1:]
    return "use " + " ".join(re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("_", " ")
                             .lower().split())


def ask_for(prop: str, schema: Json) -> str:
    label = str(schema.get("description") or prop.replace("_", " ")).rstrip(".")
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        options = [str(o) for o in enum[:4]]
        return f"Which {prop.replace('_', ' ')}: {', '.join(options[:-1])} or {options[-1]}?"
    return f"What is the {label[0].lower() + label[1:]}?"
