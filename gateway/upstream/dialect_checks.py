"""The error and the small shape checks shared by the beta <-> GA translation modules.

Pure code: no I/O, no asyncio. Every check names the offending field with a dotted path
(``session.input_audio_format``, ``item.content[0].type``) so the gateway can answer a
beta client with an ``error`` event whose ``param`` points at what it sent.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from enum import StrEnum
from typing import Any

Json = dict[str, Any]


class ErrorCode(StrEnum):
    """``error.code`` values, named the way OpenAI names its own request errors."""

    UNKNOWN_PARAMETER = "unknown_parameter"
    MISSING_REQUIRED_PARAMETER = "missing_required_parameter"
    INVALID_TYPE = "invalid_type"
    INVALID_VALUE = "invalid_value"
    #: A GA-only field or shape sent on a connection that speaks the beta dialect.
    DIALECT_MISMATCH = "dialect_mismatch"


class DialectError(ValueError):
    """A client event (or request body) that cannot be translated.

    ``param`` is the dotted path of the offending field relative to the event
    (``session.input_audio_format``), or ``None`` when the whole event is at fault.
    """

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.param = param or None

    def error_object(self, client_event_id: str | None = None) -> Json:
        """The ``error`` member of a Realtime ``error`` event (same shape in both dialects)."""
        return {"type": "invalid_request_error", "code": self.code, "message": self.message,
                "param": self.param, "event_id": client_event_id}

    def __repr__(self) -> str:
        return f"DialectError({self.code!r}, {self.message!r}, param={self.param!r})"


def join(prefix: str, name: str | int) -> str:
    """``join("session", "voice") == "session.voice"``; ints become ``[i]`` indexes."""
    if isinstance(name, int):
        return f"{prefix}[{name}]"
    return f"{prefix}.{name}" if prefix else name


def _kind_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _invalid_type(param: str, expected: str, value: object) -> DialectError:
    return DialectError(
        ErrorCode.INVALID_TYPE,
        f"Invalid type for '{param}': expected {expected}, but got {_kind_name(value)} instead.",
        param)


def expect_dict(value: object, param: str) -> Json:
    if not isinstance(value, dict):
        raise _invalid_type(param, "an object", value)
    return value


def expect_list(value: object, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise _invalid_type(param, "an array", value)
    return value


def expect_str(value: object, param: str) -> str:
    if not isinstance(value, str):
        raise _invalid_type(param, "a string", value)
    return value


def expect_int(value: object, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_type(param, "an integer", value)
    return value


def expect_number(value: object, param: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid_type(param, "a number", value)
    return value


def expect_bool(value: object, param: str) -> bool:
    if not isinstance(value, bool):
        raise _invalid_type(param, "a boolean", value)
    return value


#: Checkers by the kind names used in the field tables of the other modules.
CHECKERS: Mapping[str, Callable[[object, str], object]] = {
    "str": expect_str, "int": expect_int, "number": expect_number, "bool": expect_bool,
    "dict": expect_dict, "list": expect_list,
}


def check_kind(value: object, kind: str, param: str) -> None:
    CHECKERS[kind](value, param)


def _quote_list(values: Collection[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def expect_enum(value: object, allowed: Collection[str], param: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        shown = value if isinstance(value, str) else _kind_name(value)
        raise DialectError(
            ErrorCode.INVALID_VALUE,
            f"Invalid value for '{param}': '{shown}'. Supported values are: "
            f"{_quote_list(allowed)}.", param)
    return value


def require(obj: Json, key: str, prefix: str) -> Any:
    """The value of a required key; a missing key or an explicit ``null`` is an error."""
    value = obj.get(key)
    if value is None:
        param = join(prefix, key)
        raise DialectError(ErrorCode.MISSING_REQUIRED_PARAMETER,
                           f"Missing required parameter: '{param}'.", param)
    return value


def reject_unknown(obj: Json, allowed: Collection[str], prefix: str,
                   ga_only: Mapping[str, str] | None = None) -> None:
    """Fail on the first key that is neither ``allowed`` nor known.

    A key listed in ``ga_only`` is a field of the GA dialect; its value is a hint on the
    beta spelling, and the error says the client mixed the two dialects.
    """
    for key in obj:
        if key in allowed:
            continue
        param = join(prefix, key)
        if ga_only is not None and key in ga_only:
            raise dialect_mismatch(param, ga_only[key])
        raise DialectError(ErrorCode.UNKNOWN_PARAMETER, f"Unknown parameter: '{param}'.", param)


def dialect_mismatch(param: str, hint: str) -> DialectError:
    return DialectError(
        ErrorCode.DIALECT_MISMATCH,
        f"'{param}' belongs to the GA Realtime API, but this connection speaks the beta "
        f"dialect (OpenAI-Beta: realtime=v1). {hint}".rstrip(), param)


__all__ = [
    "CHECKERS", "DialectError", "ErrorCode", "Json", "check_kind", "dialect_mismatch",
    "expect_bool", "expect_dict", "expect_enum", "expect_int", "expect_list", "expect_number",
    "expect_str", "join", "reject_unknown", "require",
]
