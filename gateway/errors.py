"""Errors in OpenAI's shape: ``{"error": {"type", "code", "message", "param"}}``."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class ApiError(Exception):
    """A client-facing error with its HTTP status. The message must never hold a secret."""

    def __init__(self, status: int, code: str, message: str, *, param: str | None = None,
                 type_: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.type = type_
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"type": self.type, "code": self.code, "message": self.message,
                          "param": self.param}}

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=json.dumps(self.body()),
                            content_type="application/json", headers=self.headers)


def error_event(code: str, message: str, *, param: str | None = None,
                client_event_id: str | None = None,
                type_: str = "invalid_request_error", event_id: str | None = None
                ) -> dict[str, Any]:
    """A Realtime ``error`` server event (valid against ``openai.types.realtime.ErrorEvent``)."""
    from .ids import new_id

    return {
        "type": "error",
        "event_id": event_id or new_id("event"),
        "error": {"type": type_, "code": code, "message": message, "param": param,
                  "event_id": client_event_id},
    }


def bad_request(code: str, message: str, param: str | None = None) -> ApiError:
    return ApiError(400, code, message, param=param)


def unauthorized(message: str, code: str = "invalid_api_key") -> ApiError:
    return ApiError(401, code, message, type_="invalid_request_error")
