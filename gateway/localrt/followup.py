"""A tool's output -> one or two spoken sentences with its useful content.

Tool outputs are free text, usually JSON. A test (and a caller) must hear the facts in it:
``{"customer": {"name": "Jane Doe", "account_id": "12345"}}`` -> "I found Jane Doe, account
1 2 3 4 5."
"""

from __future__ import annotations

import json
from typing import Any

from .spoken import say_date, say_time, spell_digits

_NAME_KEYS = ("name", "full_name", "customer_name")
_ACCOUNT_KEYS = ("account_id", "account", "account_number", "customer_id")
_PHONE_KEYS = ("phone", "phone_number")
_MAX_CHARS = 300


def describe(tool: str, output: str) -> str:
    try:
        data = json.loads(output)
    except ValueError:
        text = " ".join(output.split())
        return _clip(text) if text else f"The {_label(tool)} tool returned nothing."
    return _describe_value(tool, data)


def facts(output: str) -> dict[str, str]:
    """Name/account/phone found in a tool output, for the agent to remember."""
    try:
        data = json.loads(output)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    flat = _flatten(data)
    out: dict[str, str] = {}
    if name := _name(flat):
        out["name"] = name
    if account := _first(flat, _ACCOUNT_KEYS):
        out["account_id"] = account
    if phone := _first(flat, _PHONE_KEYS):
        out["phone"] = phone
    return out


def _describe_value(tool: str, data: Any) -> str:
    if isinstance(data, list):
        if not data:
            return "I found nothing."
        first = _describe_value(tool, data[0])
        return first if len(data) == 1 else f"I found {len(data)} results. The first: {first}"
    if not isinstance(data, dict):
        return _clip(f"The {_label(tool)} tool returned {data}.")
    flat = _flatten(data)
    sentences: list[str] = []
    error = flat.get("error")
    if error:
        sentences.append(f"Sorry, that did not work: {_sentence(error)}")
    if data.get("found") is False or flat.get("status") == "not_found":
        sentences.append("I could not find a matching customer.")
    name = _name(flat)
    if name:
        account = _first(flat, _ACCOUNT_KEYS)
        phone = _first(flat, _PHONE_KEYS)
        detail = (f", account {spell_digits(account) if account.isdigit() else account}"
                  if account else f", phone {spell_digits(phone)}" if phone else "")
        sentences.append(f"I found {name}{detail}.")
    date, time = flat.get("date"), flat.get("time")
    if date or time:
        status = flat.get("status", "")
        verb = "is booked" if status in ("", "booked", "confirmed", "scheduled", "ok") else \
            f"is {status.replace('_', ' ')}"
        when = " at ".join(p for p in (say_date(date) if date else "",
                                       say_time(time) if time else "") if p)
        sentences.append(f"The appointment {verb} for {when}.")
        if conf := _first(flat, ("confirmation", "confirmation_id", "appointment_id")):
            sentences.append(f"Your confirmation is {conf}.")
    elif flat.get("status") and not error and not name:
        sentences.append(f"The status is {flat['status'].replace('_', ' ')}.")
    if flat.get("message"):
        sentences.append(_sentence(flat["message"]))
    if not sentences:
        pairs = [f"{k.replace('_', ' ')} {v}" for k, v in list(flat.items())[:4]]
        sentences.append(f"The {_label(tool)} tool returned " + ", ".join(pairs) + "."
                         if pairs else f"The {_label(tool)} tool returned nothing.")
    return _clip(" ".join(sentences))


def _flatten(data: dict[str, Any]) -> dict[str, str]:
    """Scalars of the top level, then of nested objects (``customer``, ``appointment``); the
    top level wins. ``customer`` as a plain string is a name; ``error`` may be an object."""
    out: dict[str, str] = {}
    nested: dict[str, str] = {}
    for key, value in data.items():
        if key == "error" and isinstance(value, dict):
            out["error"] = str(value.get("message") or value.get("code") or json.dumps(value))
        elif isinstance(value, dict):
            for k, v in _flatten(value).items():
                nested.setdefault(k, v)
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            out["name" if key == "customer" else key] = str(value)
    for k, v in nested.items():
        out.setdefault(k, v)
    return out


def _name(flat: dict[str, str]) -> str:
    if name := _first(flat, _NAME_KEYS):
        return name
    first, last = flat.get("first_name", ""), flat.get("last_name", "")
    return f"{first} {last}".strip()


def _first(flat: dict[str, str], keys: tuple[str, ...]) -> str:
    for key in keys:
        if flat.get(key):
            return flat[key]
    return ""


def _sentence(text: str) -> str:
    text = " ".join(str(text).split())
    return text if text.endswith((".", "!", "?")) else text + "."


def _label(tool: str) -> str:
    return tool.replace("_", " ")


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_CHARS else text[:_MAX_CHARS].rsplit(" ", 1)[0] + "."
