"""JSON from untrusted peers, parsed within a size and a nesting-depth limit.

``json.loads`` recurses once per nesting level: ``[[[[…]]]]`` a few thousand deep raises
``RecursionError`` (not ``ValueError``), which a handler catching bad JSON lets through as a
500, or as an exception in a data-channel callback that ends the call. Every place that
parses what a client, Twilio or an operator sent goes through :func:`loads_limited`, which
refuses a document over ``max_bytes`` or nested deeper than ``max_depth`` before parsing it.

Both errors are :class:`ValueError` subclasses, so existing ``except ValueError`` code keeps
working; callers that want to say *why* catch the two classes first.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: What any event, body or message of the gateway's protocols needs (OpenAI's deepest events
#: nest under ten levels; a tool's JSON schema a few more).
DEFAULT_MAX_DEPTH = 64

# A JSON string literal (escapes included); removing them leaves only structure.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


class JsonTooLarge(ValueError):
    """The document is over ``max_bytes``."""

    def __init__(self, size: int, max_bytes: int) -> None:
        super().__init__(f"JSON of {size} bytes is over the limit of {max_bytes} bytes")
        self.size = size
        self.max_bytes = max_bytes


class JsonTooDeep(ValueError):
    """The document nests arrays/objects deeper than ``max_depth``."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(f"JSON nests deeper than {max_depth} levels")
        self.max_depth = max_depth


def nesting_depth(data: bytes, stop_after: int | None = None) -> int:
    """The deepest array/object nesting of ``data`` (brackets inside strings do not count).

    Stops counting once ``stop_after`` is exceeded. Malformed input gives some number; the
    parser that follows reports it as invalid.
    """
    # Fast path: fewer opening brackets than the limit cannot nest deeper than it.
    opens = data.count(b"[") + data.count(b"{")
    if stop_after is not None and opens <= stop_after:
        return opens
    depth = deepest = 0
    structure = _STRING.sub(b"", data) if b'"' in data else data
    for m in _BRACKET.finditer(structure):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_after is not None and deepest > stop_after:
                    return deepest
        else:
            depth -= 1
    return deepest


def loads_limited(text: str | bytes, *, max_bytes: int,
                  max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """``json.loads`` for untrusted input: :class:`JsonTooLarge`, :class:`JsonTooDeep`, or
    ``ValueError`` for invalid JSON; never ``RecursionError``."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if len(data) > max_bytes:
        raise JsonTooLarge(len(data), max_bytes)
    if nesting_depth(data, stop_after=max_depth) > max_depth:
        raise JsonTooDeep(max_depth)
    try:
        return json.loads(data)
    except RecursionError as e:  # cannot happen under a sane max_depth; never a 500 anyway
        raise JsonTooDeep(max_depth) from e
    except UnicodeDecodeError as e:
        raise ValueError("JSON is not valid UTF-8") from e
