"""The upstream's errors, told to clients in the gateway's own words.

The upstream's error text is written for the holder of the upstream key: it can name that
key (OpenAI masks it as ``sk-proj-…abcd``, still the key's identity), the organization or
project, the upstream's URL or host. None of that may reach a client, who must not learn
what the gateway speaks to or with which account. So every upstream error that goes to a
client keeps its ``type``, ``code``, ``param`` and ``event_id`` (the client's own reference)
and gets a message from here:

- codes about the gateway's account (key, quota, organization, billing, rate limits) always
  get the gateway's text: they are the gateway's problem, not the client's request's;
- any other message is passed on only if it carries nothing that looks like an identity
  (a key, an org or project id, a URL or host name, an e-mail); otherwise the gateway's
  generic text for its code.
"""

from __future__ import annotations

import re
from typing import Any

#: Codes about the upstream account: the client did nothing wrong and learns nothing more.
ACCOUNT_CODES: dict[str, str] = {
    "invalid_api_key": "The gateway could not authenticate with its realtime upstream.",
    "incorrect_api_key": "The gateway could not authenticate with its realtime upstream.",
    "insufficient_quota": "The gateway's realtime upstream is out of capacity; try later.",
    "billing_hard_limit_reached": "The gateway's realtime upstream is out of capacity; "
                                  "try later.",
    "rate_limit_exceeded": "The gateway's realtime upstream is rate limiting; slow down "
                           "or try later.",
    "organization_not_found": "The gateway's realtime upstream account is misconfigured.",
    "invalid_organization": "The gateway's realtime upstream account is misconfigured.",
    "invalid_project": "The gateway's realtime upstream account is misconfigured.",
    "unauthorized": "The gateway could not authenticate with its realtime upstream.",
    "permission_denied": "The gateway's realtime upstream refused the request.",
    "model_not_found": "The model is not available from the gateway's realtime upstream.",
}
ACCOUNT_TYPES = frozenset({"authentication_error", "permission_error", "insufficient_quota",
                           "rate_limit_error", "billing_error"})
GENERIC = "The realtime upstream reported an error ({code})."
#: Longest upstream message passed on (a longer one is summarised by the generic text).
MAX_MESSAGE_CHARS = 400

# What could identify the upstream or its account.
_IDENTITY = re.compile(
    r"sk-|sk_|\bkey\b|api[ _-]?key|\borg-|\borg_|organi[sz]ation|\bproj[_-]|project|"
    r"https?://|wss?://|\bopenai\b|\bazure\b|\b[\w-]+\.(?:com|net|org|io|ai|dev)\b|"
    r"[\w.+-]+@[\w-]+\.|\bbearer\b|\baccount\b",
    re.IGNORECASE)


def safe_message(code: str, message: Any, type_: str | None = None) -> str:
    """The text a client may read for an upstream error with ``code`` and ``message``."""
    mapped = ACCOUNT_CODES.get(code)
    if mapped is not None:
        return mapped
    if type_ in ACCOUNT_TYPES:
        return GENERIC.format(code=code)
    if (not isinstance(message, str) or not message or len(message) > MAX_MESSAGE_CHARS
            or _IDENTITY.search(message)):
        return GENERIC.format(code=code)
    return message


def _safe_param(param: Any) -> str | None:
    if isinstance(param, str) and len(param) <= 200 and not _IDENTITY.search(param):
        return param
    return None


def client_error(err: Any) -> dict[str, Any]:
    """An upstream ``error`` object as a client may see it (a new dict)."""
    err = err if isinstance(err, dict) else {}
    type_ = err.get("type") if isinstance(err.get("type"), str) else "server_error"
    code = str(err.get("code") or type_ or "upstream_error")[:64]
    out: dict[str, Any] = {"type": type_, "code": code,
                           "message": safe_message(code, err.get("message"), type_),
                           "param": _safe_param(err.get("param"))}
    if isinstance(err.get("event_id"), str):
        out["event_id"] = err["event_id"]
    elif "event_id" in err:
        out["event_id"] = None
    return out


def client_error_event(event: dict[str, Any]) -> dict[str, Any]:
    """An upstream ``error`` event with its error object made safe."""
    return dict(event, error=client_error(event.get("error")))


def client_response_done(event: dict[str, Any]) -> dict[str, Any]:
    """A ``response.done`` whose failed status carries the upstream's error, made safe."""
    response = event.get("response")
    if not isinstance(response, dict):
        return event
    details = response.get("status_details")
    if not isinstance(details, dict) or not isinstance(details.get("error"), dict):
        return event
    # A status error is type and code only (openai's RealtimeResponseStatus.Error); anything
    # else the upstream put there is its own text: dropped.
    err = {k: v for k, v in details["error"].items()
           if k in ("type", "code") and (v is None or isinstance(v, str))}
    return dict(event, response=dict(response, status_details=dict(details, error=err)))
