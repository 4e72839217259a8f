"""Validate events against the SDK's types of both dialects, and catch unknown keys.

The SDK's unions are wrapped in its own ``PropertyInfo`` annotation, which pydantic
ignores; :func:`discriminated` re-wraps them (the frozen beta module is wrapped the same
way as GA). The SDK models allow extra keys, so validation alone would accept a
misspelled or wrong-dialect field: :func:`extras` walks the validated model and lists
every key no model declared.

A few keys the servers really sent are missing from the frozen SDK models; each
allowance below names the key and why, and nothing else is allowed.
"""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any, Union

from openai.types.beta.realtime import SessionCreateResponse as BetaSessionCreateResponse
from openai.types.beta.realtime import realtime_client_event as beta_client
from openai.types.beta.realtime import realtime_server_event as beta_server
from openai.types.beta.realtime.session import Session as BetaSession
from openai.types.beta.realtime.transcription_session_updated_event import (
    TranscriptionSessionUpdatedEvent,
)
from openai.types.realtime import realtime_client_event as ga_client
from openai.types.realtime import realtime_server_event as ga_server
from openai.types.realtime.client_secret_create_params import ExpiresAfter
from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest
from openai.types.realtime.response_item_reference import ResponseItemReference
from pydantic import BaseModel, Field, TypeAdapter

Json = dict[str, Any]


def union_members(alias: Any) -> tuple[type[BaseModel], ...]:
    wrapped = typing.get_args(alias)  # (Union[...], PropertyInfo(...))
    assert len(wrapped) == 2, f"unexpected union wrapping: {alias!r}"
    return typing.get_args(wrapped[0])


def discriminated(alias: Any) -> TypeAdapter[Any]:
    members = union_members(alias)
    union: Any = Annotated[Union[members], Field(discriminator="type")]  # noqa: UP007
    return TypeAdapter(union)


def event_types(alias: Any) -> frozenset[str]:
    return frozenset(typing.get_args(m.model_fields["type"].annotation)[0]
                     for m in union_members(alias))


BETA_SERVER = discriminated(beta_server.RealtimeServerEvent)
BETA_CLIENT = discriminated(beta_client.RealtimeClientEvent)
GA_SERVER = discriminated(ga_server.RealtimeServerEvent)
GA_CLIENT = discriminated(ga_client.RealtimeClientEvent)

BETA_SERVER_TYPES = event_types(beta_server.RealtimeServerEvent)
BETA_CLIENT_TYPES = event_types(beta_client.RealtimeClientEvent)
GA_SERVER_TYPES = event_types(ga_server.RealtimeServerEvent)
GA_CLIENT_TYPES = event_types(ga_client.RealtimeClientEvent)


def _walk(value: Any, path: str, found: list[str]) -> None:
    if isinstance(value, BaseModel):
        found.extend(f"{path}.{k}".lstrip(".") for k in (value.model_extra or {}))
        for name in type(value).model_fields:
            _walk(getattr(value, name), f"{path}.{name}", found)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _walk(v, f"{path}[{i}]", found)
    elif isinstance(value, dict):
        for k, v in value.items():
            _walk(v, f"{path}.{k}", found)


def extras(model: BaseModel) -> list[str]:
    """Dotted paths of every key no model declared, with list indexes as ``[]``."""
    found: list[str] = []
    _walk(model, "", found)
    return [re.sub(r"\[\d+\]", "[]", p) for p in found]


def assert_no_extras(model: BaseModel, allowed: frozenset[str] = frozenset()) -> None:
    unexpected = [p for p in extras(model) if p not in allowed]
    assert not unexpected, f"unexpected keys in {type(model).__name__}: {unexpected}"


# Keys the beta server sent that the frozen beta models do not declare.
_BETA_SESSION_WIRE = frozenset({
    "session.object",      # "realtime.session" on every beta session object
    "session.expires_at",  # unix time the session ends, in session.created
})
_BETA_TRANSCRIPTION_WIRE = frozenset({
    "session.id", "session.object", "session.expires_at",
    # set by transcription_session.update, echoed back; the frozen model forgot them
    "session.input_audio_noise_reduction", "session.include",
})
BETA_EXTRA_ALLOWANCES: dict[str, frozenset[str]] = {
    "session.created": _BETA_SESSION_WIRE,
    "session.updated": _BETA_SESSION_WIRE,
    "transcription_session.updated": _BETA_TRANSCRIPTION_WIRE,
}
# The GA SDK types session.created/updated's session as the *request* config; the server
# adds the read-only id/object/expires_at that RealtimeSessionCreateResponse declares.
GA_EXTRA_ALLOWANCES: dict[str, frozenset[str]] = {
    "session.created": frozenset({"session.id", "session.object", "session.expires_at"}),
    "session.updated": frozenset({"session.id", "session.object", "session.expires_at"}),
}


def _model(adapter: TypeAdapter[Any], event: Json) -> BaseModel:
    model = adapter.validate_python(event)
    assert isinstance(model, BaseModel)
    return model


def validate_beta_server(event: Json) -> BaseModel:
    """A beta server event, strictly. Covers ``transcription_session.created`` too.

    The beta server sent ``transcription_session.created`` first on transcription
    connections (the frozen union lacks it; same payload as ``.updated``). The SDK marks
    the transcription session's ``client_secret`` required, but the beta docs say it is
    absent on WebSocket events; a placeholder fills it for validation only.
    """
    if event["type"] in ("transcription_session.created", "transcription_session.updated"):
        assert "client_secret" not in event["session"]
        patched = {**event, "type": "transcription_session.updated",
                   "session": {**event["session"],
                               "client_secret": {"value": "placeholder", "expires_at": 0}}}
        model: BaseModel = TranscriptionSessionUpdatedEvent.model_validate(patched)
        assert_no_extras(model, BETA_EXTRA_ALLOWANCES["transcription_session.updated"])
        return model
    model = _model(BETA_SERVER, event)
    assert_no_extras(model, BETA_EXTRA_ALLOWANCES.get(event["type"], frozenset()))
    return model


def validate_beta_client(event: Json) -> BaseModel:
    model = _model(BETA_CLIENT, event)
    assert_no_extras(model)
    return model


def validate_ga_server(event: Json) -> BaseModel:
    model = _model(GA_SERVER, event)
    assert_no_extras(model, GA_EXTRA_ALLOWANCES.get(event["type"], frozenset()))
    return model


def validate_ga_client(event: Json) -> BaseModel:
    """A GA client event, strictly.

    The SDK's pydantic ``RealtimeResponseCreateParams.input`` lists conversation items
    only, although the API (and the SDK's own ``ResponseCreateEventWithReferencesParam``)
    also takes ``{"type": "item_reference", "id"}``; those are checked on their own.
    """
    if event["type"] == "response.create" and isinstance(event.get("response"), dict):
        items = event["response"].get("input") or []
        refs = [i for i in items if i.get("type") == "item_reference"]
        for ref in refs:
            assert_no_extras(ResponseItemReference.model_validate(ref))
        if refs:
            rest = [i for i in items if i.get("type") != "item_reference"]
            event = {**event, "response": {**event["response"], "input": rest}}
    model = _model(GA_CLIENT, event)
    assert_no_extras(model)
    return model


def validate_beta_session_create_response(body: Json) -> None:
    """The beta ``/v1/realtime/sessions`` response: the session object + ``client_secret``.

    ``SessionCreateResponse`` checks the secret and the fields it declares; its frozen
    model lists fewer session fields than the beta ``Session``, so the session part is
    checked strictly against ``Session`` (plus the wire-only keys above).
    """
    BetaSessionCreateResponse.model_validate(body)
    session = {k: v for k, v in body.items() if k != "client_secret"}
    assert_no_extras(BetaSession.model_validate(session),
                     frozenset(p.removeprefix("session.") for p in _BETA_SESSION_WIRE))


def validate_ga_client_secret_request(body: Json) -> None:
    """A GA ``POST /v1/realtime/client_secrets`` body (``expires_after`` + realtime session)."""
    assert set(body) <= {"expires_after", "session"}, body
    TypeAdapter(ExpiresAfter).validate_python(body["expires_after"])
    assert set(body["expires_after"]) <= {"anchor", "seconds"}
    assert_no_extras(RealtimeSessionCreateRequest.model_validate(body["session"]))
