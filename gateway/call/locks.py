"""Profile locks on the events that carry a session field for one response or one item.

``session.update`` is checked by :func:`gateway.call.policy.apply_update`. The same fields ride
on ``response.create`` (per-response ``instructions``, ``tools``, ``tool_choice``, voice,
modalities, a ``prompt``, and ``input`` items) and on ``conversation.item.create`` (a
``system`` or ``developer`` message is instructions by another name). A lock holds on all of
them: a locked field may be repeated with the session's value, never changed. The beta dialect
is translated to GA before these checks, so both dialects meet the same rules.
"""

from __future__ import annotations

from typing import Any

from gateway.config import Profile

from .policy import PolicyError, ToolLookup, Trust, get_path, merge_tools, same_value

Event = dict[str, Any]

#: ``response.create``'s ``response`` path -> (lock name, the session path it overrides).
_RESPONSE_FIELDS: dict[tuple[str, ...], tuple[str, tuple[str, ...]]] = {
    ("instructions",): ("instructions", ("instructions",)),
    ("tool_choice",): ("tool_choice", ("tool_choice",)),
    ("audio", "output", "voice"): ("voice", ("audio", "output", "voice")),
    ("output_modalities",): ("output_modalities", ("output_modalities",)),
    ("max_output_tokens",): ("max_output_tokens", ("max_output_tokens",)),
    ("prompt",): ("prompt", ("prompt",)),
}
#: Message roles that instruct the model rather than speak in the conversation.
INSTRUCTING_ROLES = frozenset({"system", "developer"})


def _locked_error(param: str, what: str, profile: Profile) -> PolicyError:
    return PolicyError(param, f"{what} is locked by the agent profile '{profile.name}'; the "
                       "event was not applied.")


def check_item(item: Any, profile: Profile, trust: Trust, param: str = "item") -> None:
    """A conversation item a client adds (``conversation.item.create`` or a response's
    ``input``): a system/developer message is refused while instructions are locked."""
    if not isinstance(item, dict) or item.get("type", "message") != "message":
        return
    role = item.get("role")
    if role in INSTRUCTING_ROLES and "instructions" in trust.locked(profile):
        raise _locked_error(f"{param}.role", f"A {role} message (instructions)", profile)


def check_response_create(event: Event, session: Event, profile: Profile, tools: ToolLookup,
                          trust: Trust) -> None:
    """Raise :class:`PolicyError` when a client's ``response.create`` changes a locked field
    for its response, or declares a tool that would shadow a server tool."""
    resp = event.get("response")
    if resp is None:
        return
    if not isinstance(resp, dict):
        raise PolicyError("response", "response must be an object.", code="invalid_type")
    locked = trust.locked(profile)
    for path, (lock, session_path) in _RESPONSE_FIELDS.items():
        present, value = get_path(resp, path)
        if present and lock in locked and \
                not same_value(session_path, value, get_path(session, session_path)[1]):
            raise _locked_error("response." + ".".join(path), f"'{lock}'", profile)
    if "tools" in resp:
        # A per-response tool may not borrow a server tool's name: the gateway would not
        # know whose call it is. Repeating the session's tools is not a change.
        merged = merge_tools(resp["tools"], profile, tools, tools_locked=True,
                             param="response.tools")
        if "tools" in locked and not same_value(("tools",), merged, session.get("tools")):
            raise _locked_error("response.tools", "'tools'", profile)
    items = resp.get("input")
    if isinstance(items, list):
        for i, item in enumerate(items):
            check_item(item, profile, trust, param=f"response.input[{i}]")
