"""Ephemeral client tokens (``ek_…``): minted with an API key, spent by a browser.

A token is ``ek_<payload>.<mac>``: the payload carries its id, expiry and profile, the MAC
(HMAC-SHA256 with ``GATEWAY_TOKEN_SECRET``) makes it unforgeable, and the registry holds
the session config it was minted with, keyed by id, so the token binds that config and is
spent once (single use is an atomic take in the registry).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from gateway.cluster.registry import Registry
from gateway.errors import ApiError

PREFIX = "ek_"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token entitles its bearer to."""

    jti: str
    profile: str
    session: dict[str, Any]
    dialect: str
    expires_at: int
    extra: dict[str, Any]


class TokenService:
    def __init__(self, secret: str, registry: Registry, *, single_use: bool = True) -> None:
        self._key = secret.encode()
        self._registry = registry
        self.single_use = single_use

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:24])

    async def mint(self, *, profile: str, session: dict[str, Any], ttl_s: int,
                   dialect: str = "ga", extra: dict[str, Any] | None = None) -> tuple[str, int]:
        jti = secrets.token_urlsafe(12)
        expires_at = int(time.time()) + ttl_s
        payload = _b64(json.dumps({"j": jti, "e": expires_at, "p": profile},
                                  separators=(",", ":")).encode())
        await self._registry.put_token(
            jti, {"profile": profile, "session": session, "dialect": dialect,
                  "extra": extra or {}}, ttl_s + 5)
        return f"{PREFIX}{payload}.{self._mac(payload)}", expires_at

    def looks_like_token(self, value: str) -> bool:
        return value.startswith(PREFIX)

    async def redeem(self, token: str) -> Grant:
        """Verify and (when single use) spend a token. Raises a 401 :class:`ApiError`."""
        body = token[len(PREFIX):] if token.startswith(PREFIX) else ""
        payload, _, mac = body.partition(".")
        if not payload or not mac or not hmac.compare_digest(mac, self._mac(payload)):
            raise ApiError(401, "invalid_token", "The ephemeral token is not valid.")
        try:
            claims = json.loads(_unb64(payload))
            jti, expires_at, profile = str(claims["j"]), int(claims["e"]), str(claims["p"])
        except (ValueError, KeyError, TypeError) as e:
            raise ApiError(401, "invalid_token", "The ephemeral token is not valid.") from e
        if expires_at <= time.time():
            raise ApiError(401, "token_expired", "The ephemeral token has expired; mint a new one.")
        record = await self._registry.take_token(jti, consume=self.single_use)
        if record is None:
            raise ApiError(401, "token_already_used",
                           "The ephemeral token was already used; tokens are single-use.")
        return Grant(jti=jti, profile=profile, session=dict(record["session"]),
                     dialect=str(record.get("dialect", "ga")), expires_at=expires_at,
                     extra=dict(record.get("extra", {})))
