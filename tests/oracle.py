"""Conformance oracle: every Realtime event checked against the official ``openai`` GA types.

The SDK's pydantic models accept any extra key (``extra="allow"``), so validation alone proves
required fields and literal values, not the absence of misspelled ones. This helper also walks
every validated model and fails on any key the GA type does not declare.

The SDK wraps its unions in its own annotation, which pydantic ignores; they are re-wrapped here
as discriminated unions on ``type``. Validation is strict (no str -> int coercion, no float for
an int), so ``audio_start_ms: 12.0`` fails as it would for a typed client.

API (reused by other suites, keep it stable):
    validate_server_event(event: dict) -> None   # AssertionError on any violation
    validate_client_event(event: dict) -> None
    validate_beta_server_event(event: dict) -> None   # the same, against openai.types.beta.realtime
    validate_live_server_event(event: dict) -> None   # the same, against openai.types.live
    validate_live_client_event(event: dict) -> None
"""

from __future__ import annotations

import typing
from functools import cache
from typing import Annotated, Any, Union

import pydantic
from pydantic import Field, TypeAdapter

__all__ = ["validate_beta_server_event", "validate_client_event", "validate_live_client_event",
           "validate_live_server_event", "validate_server_event"]


def _discriminated(alias: Any) -> TypeAdapter[Any]:
    members = typing.get_args(typing.get_args(alias)[0])
    union = Union[members]  # type: ignore[valid-type]  # noqa: UP007 - built at run time
    return TypeAdapter(Annotated[union, Field(discriminator="type")])


@cache
def _server_adapter() -> TypeAdapter[Any]:
    from openai.types.realtime import RealtimeServerEvent

    return _discriminated(RealtimeServerEvent)


@cache
def _client_adapter() -> TypeAdapter[Any]:
    from openai.types.realtime import RealtimeClientEvent

    return _discriminated(RealtimeClientEvent)


@cache
def _beta_server_adapter() -> TypeAdapter[Any]:
    from openai.types.beta.realtime import RealtimeServerEvent

    return _discriminated(RealtimeServerEvent)


@cache
def _live_server_adapter() -> TypeAdapter[Any]:
    from openai.types.live import ServerEvent

    return _discriminated(ServerEvent)


@cache
def _live_client_adapter() -> TypeAdapter[Any]:
    from openai.types.live import ClientEvent

    return _discriminated(ClientEvent)


def _walk_extras(obj: object, path: str, found: list[str]) -> None:
    if isinstance(obj, pydantic.BaseModel):
        for key in obj.model_extra or {}:
            found.append(f"{path}.{key}")
        for name in type(obj).model_fields:
            _walk_extras(getattr(obj, name), f"{path}.{name}", found)
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            _walk_extras(value, f"{path}[{i}]", found)
    elif isinstance(obj, dict):
        # Free-form fields (tool ``parameters``, ``metadata``) stay plain dicts: nothing to find.
        for key, value in obj.items():
            _walk_extras(value, f"{path}.{key}", found)


def _validate(adapter: TypeAdapter[Any], event: dict[str, Any], side: str,
              documented: frozenset[str] = frozenset()) -> None:
    if not isinstance(event, dict):
        raise AssertionError(f"{side} event is not a JSON object: {event!r}")
    try:
        model = adapter.validate_python(event, strict=True)
    except pydantic.ValidationError as exc:
        raise AssertionError(
            f"{side} event {event.get('type')!r} violates the GA types:\n{exc}\nevent: {event!r}"
        ) from None
    extras: list[str] = []
    _walk_extras(model, str(event.get("type")), extras)
    extras = [x for x in extras if x not in documented]
    if extras:
        raise AssertionError(
            f"{side} event {event.get('type')!r} has keys the GA types do not declare: "
            f"{', '.join(extras)}\nevent: {event!r}"
        )


def validate_server_event(event: dict[str, Any]) -> None:
    """Raise AssertionError unless ``event`` is a valid GA server event with no unknown keys."""
    _validate(_server_adapter(), event, "server")


def validate_client_event(event: dict[str, Any]) -> None:
    """Raise AssertionError unless ``event`` is a valid GA client event with no unknown keys."""
    _validate(_client_adapter(), event, "client")


def validate_beta_server_event(event: dict[str, Any]) -> None:
    """Raise AssertionError unless ``event`` is a valid beta-era server event
    (``openai.types.beta.realtime``) with no undeclared key: what beta clients were typed for."""
    _validate(_beta_server_adapter(), event, "beta server", BETA_DOCUMENTED)


#: Keys the beta API sent (its reference's examples: the session object's ``object:
#: "realtime.session"``) that the SDK's beta types never declared.
BETA_DOCUMENTED = frozenset({"session.created.session.object",
                             "session.updated.session.object"})


def validate_live_server_event(event: dict[str, Any]) -> None:
    """Raise AssertionError unless ``event`` is a valid GPT-Live server event
    (``openai.types.live.ServerEvent``) with no undeclared key."""
    _validate(_live_server_adapter(), event, "live server")


def validate_live_client_event(event: dict[str, Any]) -> None:
    """Raise AssertionError unless ``event`` is a valid GPT-Live client event."""
    _validate(_live_client_adapter(), event, "live client")
