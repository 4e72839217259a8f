"""STUN/TURN servers (``media.ice_servers``): parsed and checked from the config, handed to
the gateway's own peers and to clients with their token; TURN credentials static or coturn
REST-API short-lived ones, from a secret read from the environment."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiortc import RTCIceServer
from aiortc.rtcicetransport import parse_stun_turn_uri

from ..config import Secret

DEFAULT_TURN_TTL_S = 86_400


def turn_rest_credentials(secret: str, user: str, ttl_s: int,
                          now: float | None = None) -> tuple[str, str]:
    """coturn's REST API (``use-auth-secret``): ``("<expiry unix>:<user>", base64(HMAC-SHA1))``."""
    expiry = int(time.time() if now is None else now) + int(ttl_s)
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, slots=True)
class IceServer:
    """One ``[[media.ice_servers]]`` table. Credentials never appear in its repr."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: Secret | None = None
    #: coturn REST-API shared secret (from the environment variable ``turn_secret_env``).
    turn_secret: Secret | None = None
    turn_ttl_s: int = DEFAULT_TURN_TTL_S
    #: The user part of REST-API usernames for the gateway's own peers.
    turn_user: str = "gateway"
    for_gateway: bool = True
    for_clients: bool = True

    @property
    def is_turn(self) -> bool:
        return any(u.startswith(("turn:", "turns:")) for u in self.urls)

    def credentials(self, user: str | None = None,
                    now: float | None = None) -> tuple[str | None, str | None]:
        if self.turn_secret is not None:
            return turn_rest_credentials(self.turn_secret.reveal(), user or self.turn_user,
                                         self.turn_ttl_s, now)
        return self.username, self.credential.reveal() if self.credential else None

    def for_client(self, user: str | None = None, now: float | None = None) -> dict[str, Any]:
        """The W3C ``RTCIceServer`` dictionary a browser passes to ``RTCPeerConnection``."""
        out: dict[str, Any] = {"urls": list(self.urls)}
        username, credential = self.credentials(user, now)
        if username is not None:
            out["username"] = username
        if credential is not None:
            out["credential"] = credential
        return out

    def for_aiortc(self, now: float | None = None) -> RTCIceServer:
        username, credential = self.credentials(None, now)
        return RTCIceServer(urls=list(self.urls), username=username, credential=credential)


_ICE_KEYS = frozenset({"urls", "username", "credential", "credential_env", "turn_secret_env",
                       "turn_ttl_s", "turn_user", "for_gateway", "for_clients"})


def parse_ice_servers(raw: Any, env: Mapping[str, str] | None = None) -> tuple[IceServer, ...]:
    """``media.ice_servers`` (TOML tables, or JSON text from ``GATEWAY_MEDIA_ICE_SERVERS``)."""
    env = os.environ if env is None else env
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except ValueError as e:
            raise ValueError("media.ice_servers: not valid JSON") from e
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, Sequence):
        raise ValueError("media.ice_servers: expected a list of tables")
    servers = []
    for i, item in enumerate(raw):
        where = f"media.ice_servers[{i}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where}: expected a table with 'urls'")
        unknown = set(item) - _ICE_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
        urls = item.get("urls")
        urls = [urls] if isinstance(urls, str) else urls
        if not urls or not all(isinstance(u, str) and u.startswith(("stun:", "stuns:", "turn:",
                                                                    "turns:")) for u in urls):
            raise ValueError(f"{where}.urls: expected stun:/turn:/turns: URLs")
        for u in urls:  # as aiortc will parse them for every call: fail now, not per call
            try:
                parse_stun_turn_uri(u)
            except ValueError as e:
                raise ValueError(f"{where}.urls: {u!r}: {e}") from e
        secret = None
        if item.get("turn_secret_env"):
            var = str(item["turn_secret_env"])
            if not env.get(var):
                raise ValueError(f"{where}.turn_secret_env: the environment variable {var} "
                                 "is unset or empty")
            secret = Secret(env[var])
        credential = None
        if item.get("credential_env"):
            var = str(item["credential_env"])
            if not env.get(var):
                raise ValueError(f"{where}.credential_env: the environment variable {var} "
                                 "is unset or empty")
            credential = Secret(env[var])
        elif item.get("credential") is not None:
            credential = Secret(str(item["credential"]))
        username = item.get("username")
        server = IceServer(
            urls=tuple(urls), username=None if username is None else str(username),
            credential=credential, turn_secret=secret,
            turn_ttl_s=int(item.get("turn_ttl_s", DEFAULT_TURN_TTL_S)),
            turn_user=str(item.get("turn_user", "gateway")),
            for_gateway=bool(item.get("for_gateway", True)),
            for_clients=bool(item.get("for_clients", True)))
        if server.is_turn and secret is None and (username is None or credential is None):
            raise ValueError(f"{where}: a TURN server needs username + credential "
                             "(or credential_env), or turn_secret_env")
        if server.turn_ttl_s <= 0:
            raise ValueError(f"{where}.turn_ttl_s must be positive")
        servers.append(server)
    return tuple(servers)
