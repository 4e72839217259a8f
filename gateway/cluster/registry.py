"""Live calls and single-use token marks, behind one interface.

Anything another instance might need goes through :class:`Registry`. The in-memory
backend serves one instance (``make run``); a shared backend (Redis) implements the same
protocol. The objects of a call (peer, tasks, buffers) never leave this process: they live
in :class:`LocalCalls`, which also enforces capacity and drain.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from gateway.errors import ApiError


@dataclass(frozen=True, slots=True)
class CallInfo:
    call_id: str
    instance_id: str
    transport: str
    profile: str
    started_at: float
    dialect: str = "ga"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Registry(Protocol):
    async def put_token(self, jti: str, record: dict[str, Any], ttl_s: float) -> None: ...

    async def take_token(self, jti: str, *, consume: bool) -> dict[str, Any] | None:
        """The token's record; with ``consume``, atomically marks it used (None if it was)."""

    async def remember_once(self, key: str, ttl_s: float) -> bool:
        """True the first time ``key`` is seen within ``ttl_s`` (atomically, across
        instances); False for a repeat (a replayed webhook)."""
        ...

    async def add_call(self, info: CallInfo) -> None: ...

    async def remove_call(self, call_id: str) -> None: ...

    async def get_call(self, call_id: str) -> CallInfo | None: ...

    async def list_calls(self) -> list[CallInfo]: ...

    async def put_resume(self, token: str, call_id: str, instance_id: str) -> None:
        """The call's current resume token (replaces its previous one; dropped with the call)."""

    async def get_resume(self, token: str) -> tuple[str, str] | None:
        """``(call_id, owner instance id)`` for a live resume token."""

    async def instances(self) -> dict[str, str]:
        """Live instances (id -> internal URL), as their heartbeats say."""

    async def close(self) -> None: ...


#: Keys remember_once holds at most (webhooks within their TTL: far above Twilio's rate).
MAX_REMEMBERED = 100_000


class MemoryRegistry:
    """One-instance backend. Expired token records are swept on each write."""

    def __init__(self, instance_id: str = "", internal_url: str = "") -> None:
        self._tokens: dict[str, tuple[float, dict[str, Any]]] = {}
        self._calls: dict[str, CallInfo] = {}
        self._resume: dict[str, tuple[str, str]] = {}  # token -> (call id, instance)
        self._resume_of: dict[str, str] = {}  # call id -> its current token
        self._me = {instance_id: internal_url} if instance_id else {}
        #: remember_once keys -> expiry, in insertion (= expiry, one TTL per use) order.
        self._seen: OrderedDict[str, float] = OrderedDict()

    def _sweep(self) -> None:
        now = time.monotonic()
        for jti in [j for j, (exp, _) in self._tokens.items() if exp <= now]:
            del self._tokens[jti]

    async def put_token(self, jti: str, record: dict[str, Any], ttl_s: float) -> None:
        self._sweep()
        self._tokens[jti] = (time.monotonic() + ttl_s, record)

    async def take_token(self, jti: str, *, consume: bool) -> dict[str, Any] | None:
        entry = self._tokens.get(jti)
        if entry is None or entry[0] <= time.monotonic():
            return None
        if consume:
            del self._tokens[jti]
        return entry[1]

    async def remember_once(self, key: str, ttl_s: float) -> bool:
        now = time.monotonic()
        seen = self._seen
        while seen and next(iter(seen.values())) <= now:  # oldest first: expired ones go
            seen.popitem(last=False)
        if key in seen and seen[key] > now:
            return False
        seen[key] = now + ttl_s
        seen.move_to_end(key)
        if len(seen) > MAX_REMEMBERED:  # bounded memory: the oldest is forgotten first
            seen.popitem(last=False)
        return True

    async def add_call(self, info: CallInfo) -> None:
        self._calls[info.call_id] = info

    async def remove_call(self, call_id: str) -> None:
        self._calls.pop(call_id, None)
        self._resume.pop(self._resume_of.pop(call_id, ""), None)

    async def get_call(self, call_id: str) -> CallInfo | None:
        return self._calls.get(call_id)

    async def list_calls(self) -> list[CallInfo]:
        return list(self._calls.values())

    async def put_resume(self, token: str, call_id: str, instance_id: str) -> None:
        self._resume.pop(self._resume_of.get(call_id, ""), None)
        self._resume[token] = (call_id, instance_id)
        self._resume_of[call_id] = token

    async def get_resume(self, token: str) -> tuple[str, str] | None:
        return self._resume.get(token)

    async def instances(self) -> dict[str, str]:
        return dict(self._me)

    async def close(self) -> None:
        self._tokens.clear()


class Closable(Protocol):
    call_id: str

    async def close(self, reason: str) -> None: ...


class LocalCalls:
    """Calls owned by this process, with a capacity limit and a draining switch.
    ``on_remove`` is told each time a call leaves (the allocator's trim)."""

    def __init__(self, max_calls: int, on_remove: Callable[[], None] | None = None) -> None:
        self.max_calls = max_calls
        self._on_remove = on_remove
        self.draining = False
        self._calls: dict[str, Closable] = {}
        self._reserved = 0

    def reserve(self) -> None:
        """Claim a slot before the (slow) setup starts, so bursts cannot overshoot."""
        if self.draining:
            raise ApiError(503, "server_draining", "This gateway is shutting down; retry.",
                           type_="server_error", headers={"Retry-After": "5"})
        if len(self._calls) + self._reserved >= self.max_calls:
            raise ApiError(503, "at_capacity", "The gateway is at capacity; retry shortly.",
                           type_="server_error", headers={"Retry-After": "2"})
        self._reserved += 1

    def release_reservation(self) -> None:
        self._reserved = max(0, self._reserved - 1)

    def add(self, call: Closable) -> None:
        self.release_reservation()
        self._calls[call.call_id] = call

    def remove(self, call_id: str) -> None:
        if self._calls.pop(call_id, None) is not None and self._on_remove is not None:
            self._on_remove()

    def get(self, call_id: str) -> Closable | None:
        return self._calls.get(call_id)

    def by_resume_token(self, token: str) -> Closable | None:
        for call in self._calls.values():
            if getattr(call, "resume_token", None) == token:
                return call
        return None

    def __iter__(self) -> Iterator[Closable]:
        return iter(list(self._calls.values()))

    def __len__(self) -> int:
        return len(self._calls)
