"""Declarations of the built-in demo tools, in the Realtime ``tools`` shape."""

from __future__ import annotations

from typing import Any

LOOKUP_CUSTOMER: dict[str, Any] = {
    "type": "function",
    "name": "lookup_customer",
    "description": "Look up a customer by phone number or account id.",
    "parameters": {
        "type": "object",
        "properties": {
            "phone": {"type": "string", "description": "Phone number, digits only"},
            "account_id": {"type": "string", "description": "Account id, digits only"},
        },
        "additionalProperties": False,
    },
}

SCHEDULE_APPOINTMENT: dict[str, Any] = {
    "type": "function",
    "name": "schedule_appointment",
    "description": "Book an appointment for a customer on a date and time.",
    "parameters": {
        "type": "object",
        "properties": {
            "account_id": {"type": "string"},
            "date": {"type": "string", "description": "YYYY-MM-DD or a weekday"},
            "time": {"type": "string", "description": "HH:MM, 24-hour"},
            "reason": {"type": "string"},
        },
        "required": ["date", "time"],
        "additionalProperties": False,
    },
}

BUILTIN_SPECS: dict[str, dict[str, Any]] = {
    s["name"]: s for s in (LOOKUP_CUSTOMER, SCHEDULE_APPOINTMENT)
}
