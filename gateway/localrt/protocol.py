"""The wire shapes of the GA Realtime dialect: ids, server events, client-facing errors.

Server events are plain dicts built here and nowhere else, so every key the engine sends is
visible in one file (the test oracle fails on any key the ``openai`` GA types do not declare).
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Final

Json = dict[str, Any]

INVALID_REQUEST: Final = "invalid_request_error"


def new_id(prefix: str) -> str:
    """An id in OpenAI's shape (``event_…``, ``item_…``, ``resp_…``, ``call_…``)."""
    return f"{prefix}_{secrets.token_hex(10)}"


def server_event(type_: str, **fields: Any) -> Json:
    return {"type": type_, "event_id": new_id("event"), **fields}


class ClientError(Exception):
    """Something the client sent that the engine refuses; the session goes on.

    ``code`` and ``param`` follow OpenAI's habits (``invalid_value``, ``unknown_parameter``,
    ``missing_required_parameter``, ``invalid_type``) where the behaviour is known.
    """

    def __init__(self, code: str, message: str, param: str | None = None,
                 type_: str = INVALID_REQUEST) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.type = type_

    def event(self, client_event_id: str | None) -> Json:
        return error_event(self.code, self.message, param=self.param,
                           client_event_id=client_event_id, type_=self.type)


def error_event(code: str, message: str, *, param: str | None = None,
                client_event_id: str | None = None, type_: str = INVALID_REQUEST) -> Json:
    return server_event("error", error={"type": type_, "code": code, "message": message,
                                        "param": param, "event_id": client_event_id})


def parse_client_event(raw: str) -> Json:
    """JSON text -> an event object. Raises ClientError for anything not a JSON object."""
    try:
        event = json.loads(raw)
    except ValueError as exc:
        raise ClientError("invalid_json", f"The message is not valid JSON: {exc}") from None
    if not isinstance(event, dict):
        raise ClientError("invalid_json", "A client event must be a JSON object.")
    return event


def client_event_id(event: Json) -> str | None:
    value = event.get("event_id")
    return value if isinstance(value, str) else None


def event_type(event: Json) -> str:
    if not isinstance(event.get("event_id", ""), str):
        raise ClientError("invalid_type", "Invalid type for 'event_id': expected a string.",
                          "event_id")
    kind = event.get("type")
    if kind is None:
        raise ClientError("missing_required_parameter",
                          "Missing required parameter: 'type'.", "type")
    if not isinstance(kind, str):
        raise ClientError("invalid_type", "Invalid type for 'type': expected a string.", "type")
    return kind


# -- field checks used by the handlers ---------------------------------------------------------

def check_keys(obj: Json, allowed: frozenset[str] | set[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            param = f"{path}.{key}" if path else key
            raise ClientError("unknown_parameter", f"Unknown parameter: '{param}'.", param)


def get_obj(obj: Json, key: str, path: str, *, required: bool = False) -> Json | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _missing(path, key)
        return None
    if not isinstance(value, dict):
        raise _invalid_type(path, key, "an object")
    return value


def get_str(obj: Json, key: str, path: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _missing(path, key)
        return None
    if not isinstance(value, str):
        raise _invalid_type(path, key, "a string")
    return value


def get_int(obj: Json, key: str, path: str, *, required: bool = False,
            minimum: int | None = None) -> int | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _missing(path, key)
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_type(path, key, "an integer")
    if minimum is not None and value < minimum:
        param = _param(path, key)
        raise ClientError("integer_below_min_value",
                          f"Invalid '{param}': expected a value >= {minimum}, got {value}.", param)
    return value


def get_float(obj: Json, key: str, path: str, lo: float, hi: float) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid_type(path, key, "a number")
    if not lo <= value <= hi:
        param = _param(path, key)
        raise ClientError("invalid_value",
                          f"Invalid '{param}': expected a value in [{lo}, {hi}], got {value}.",
                          param)
    return float(value)


def get_bool(obj: Json, key: str, path: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _invalid_type(path, key, "a boolean")
    return value


def get_choice(obj: Json, key: str, path: str, choices: tuple[str, ...], *,
               required: bool = False) -> str | None:
    value = get_str(obj, key, path, required=required)
    if value is not None and value not in choices:
        raise invalid_value(_param(path, key), value, choices)
    return value


def invalid_value(param: str, value: object, choices: tuple[str, ...]) -> ClientError:
    listed = ", ".join(f"'{c}'" for c in choices)
    return ClientError("invalid_value",
                       f"Invalid value: '{value}'. Supported values are: {listed}.", param)


def _param(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _missing(path: str, key: str) -> ClientError:
    param = _param(path, key)
    return ClientError("missing_required_parameter", f"Missing required parameter: '{param}'.",
                       param)


def _invalid_type(path: str, key: str, expected: str) -> ClientError:
    param = _param(path, key)
    return ClientError("invalid_type", f"Invalid type for '{param}': expected {expected}.", param)
