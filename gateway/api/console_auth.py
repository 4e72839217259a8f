"""Console sign-in: the admin token, exchanged once, for a short-lived session cookie.

The admin secret is posted once by the sign-in form and never sent back: the browser holds
a random session id in an ``HttpOnly``, ``SameSite=Strict`` cookie scoped to ``/console``
(``Secure`` when served over https). Sessions live in a bounded in-memory store with an
absolute lifetime and an idle timeout. Every state-changing request must carry the session's
CSRF token in ``X-CSRF-Token``, equal to the (script-readable) CSRF cookie and to the
server's copy (double submit, checked server-side), and an ``Origin`` of this gateway.

``guard(action)`` wraps a console handler: 401 without a live session, 403 on a CSRF or
origin failure; the request then carries the session's label under
:data:`gateway.api.appkeys.CONSOLE_WHO` (``admin._check`` accepts it), and the action goes to
the ``gateway.audit`` log with that label, never the token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.errors import ApiError

from .appkeys import CONFIG, CONSOLE_WHO

audit = logging.getLogger("gateway.audit")

COOKIE = "gw_console"
CSRF_COOKIE = "gw_console_csrf"
CSRF_HEADER = "X-CSRF-Token"
COOKIE_PATH = "/console"
MAX_SESSIONS = 256
#: Failed sign-ins allowed per remote address per minute (a bounded table of addresses).
MAX_FAILURES = 10
_FAILURE_TABLE = 1024
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Session:
    sid: str
    csrf: str
    who: str
    created: float
    last_seen: float


class SessionStore:
    """Bounded: past ``max_sessions`` the least recently used session is evicted."""

    def __init__(self, ttl_s: float, idle_s: float, max_sessions: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.idle_s = idle_s
        self.max_sessions = max_sessions
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def create(self, remote: str) -> Session:
        now = self.clock()
        for sid in [s for s, v in self._sessions.items() if not self._alive(v, now)]:
            del self._sessions[sid]
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        sid = secrets.token_urlsafe(32)
        # The label names the session, not its id (a credential) nor the token.
        label = hashlib.sha256(sid.encode()).hexdigest()[:10]
        s = Session(sid, secrets.token_urlsafe(32), f"console:{label}@{remote}", now, now)
        self._sessions[sid] = s
        return s

    def _alive(self, s: Session, now: float) -> bool:
        return now - s.created < self.ttl_s and now - s.last_seen < self.idle_s

    def get(self, sid: str | None, *, touch: bool = True) -> Session | None:
        s = self._sessions.get(sid) if sid else None
        if s is None:
            return None
        now = self.clock()
        if not self._alive(s, now):
            del self._sessions[s.sid]
            return None
        if touch:
            s.last_seen = now
            self._sessions.move_to_end(s.sid)
        return s

    def expires_in(self, s: Session) -> float:
        now = self.clock()
        return max(0.0, min(s.created + self.ttl_s, s.last_seen + self.idle_s) - now)

    def drop(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def __len__(self) -> int:
        return len(self._sessions)

    # -- sign-in throttling ------------------------------------------------------------------

    def throttled(self, remote: str) -> bool:
        start, n = self._failures.get(remote, (0.0, 0))
        return n >= MAX_FAILURES and self.clock() - start < 60

    def failed(self, remote: str) -> None:
        now = self.clock()
        start, n = self._failures.pop(remote, (now, 0))
        self._failures[remote] = (start, n + 1) if now - start < 60 else (now, 1)
        while len(self._failures) > _FAILURE_TABLE:
            self._failures.popitem(last=False)


SESSIONS = web.AppKey("console_sessions", SessionStore)


def _origin_ok(request: web.Request) -> bool:
    """The request comes from a page of this gateway (its own origin or its public URL)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return request.headers.get("Sec-Fetch-Site") == "same-origin"
    allowed = {f"{request.scheme}://{request.host}"}
    public = request.app[CONFIG].server.public_url.rstrip("/")
    if public:
        scheme, _, rest = public.partition("://")
        allowed.add(f"{scheme}://{rest.split('/', 1)[0]}")
    return origin in allowed


def _secure(request: web.Request) -> bool:
    return request.secure or request.app[CONFIG].server.public_url.startswith("https://")


def current(request: web.Request) -> Session:
    s = request.app[SESSIONS].get(request.cookies.get(COOKIE))
    if s is None:
        code = "console_session_expired" if request.cookies.get(COOKIE) else \
            "console_session_required"
        raise ApiError(401, code, "Sign in to the console first (the session is missing or "
                       "has expired).")
    return s


def check_csrf(request: web.Request, s: Session) -> None:
    if not _origin_ok(request):
        raise ApiError(403, "csrf_failed", "The request's origin is not this gateway.")
    sent = request.headers.get(CSRF_HEADER, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not sent or not hmac.compare_digest(sent, cookie) or \
            not hmac.compare_digest(sent, s.csrf):
        raise ApiError(403, "csrf_failed", f"Missing or wrong {CSRF_HEADER} header.")


def guard(action: str | None = None) -> Callable[[Handler], Handler]:
    """A console route: a live session, CSRF on writes, the action in the audit log."""

    def wrap(handler: Handler) -> Handler:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            s = current(request)
            if request.method not in _SAFE:
                check_csrf(request, s)
            request[CONSOLE_WHO] = s.who
            if action is not None:
                target = request.match_info.get("call_id") or request.match_info.get("id", "-")
                audit.info("console action=%s target=%s who=%s", action, target, s.who,
                           extra={"audit": {"action": f"console_{action}", "target": target,
                                            "who": s.who}})
            return await handler(request)
        return wrapper
    return wrap


def _cookie_kwargs(request: web.Request, max_age: float | None) -> dict[str, Any]:
    kw: dict[str, Any] = {"path": COOKIE_PATH, "samesite": "Strict",
                          "secure": _secure(request)}
    if max_age is not None:
        kw["max_age"] = int(max_age)
    return kw


async def _token_from(request: web.Request) -> str:
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError as e:
            raise ApiError(400, "invalid_json", "The body is not valid JSON.") from e
        token = body.get("token") if isinstance(body, dict) else None
    else:
        token = (await request.post()).get("token")
    if not isinstance(token, str) or not token:
        raise ApiError(400, "invalid_token", "Send the admin token as 'token'.", param="token")
    return token


async def sign_in(request: web.Request) -> web.Response:
    admin = request.app[CONFIG].secrets.admin_token.reveal()
    if not admin:
        raise ApiError(503, "admin_api_disabled", "The console needs GATEWAY_ADMIN_TOKEN.",
                       type_="server_error")
    if not _origin_ok(request):
        raise ApiError(403, "csrf_failed", "The request's origin is not this gateway.")
    store = request.app[SESSIONS]
    remote = request.remote or "unknown"
    if store.throttled(remote):
        raise ApiError(429, "too_many_attempts", "Too many failed sign-ins; wait a minute.",
                       headers={"Retry-After": "60"})
    token = await _token_from(request)
    if not hmac.compare_digest(hashlib.sha256(token.encode()).digest(),
                               hashlib.sha256(admin.encode()).digest()):
        store.failed(remote)
        audit.info("console action=sign_in_failed who=-@%s", remote,
                   extra={"audit": {"action": "console_sign_in_failed", "remote": remote}})
        raise ApiError(401, "invalid_admin_token", "That is not the admin token.")
    s = store.create(remote)
    audit.info("console action=sign_in who=%s", s.who,
               extra={"audit": {"action": "console_sign_in", "who": s.who}})
    resp = web.json_response(_describe(store, s))
    resp.set_cookie(COOKIE, s.sid, httponly=True, **_cookie_kwargs(request, store.ttl_s))
    # Readable by the page's script: it echoes it in X-CSRF-Token (double submit).
    resp.set_cookie(CSRF_COOKIE, s.csrf, **_cookie_kwargs(request, store.ttl_s))
    return resp


def _describe(store: SessionStore, s: Session) -> dict[str, Any]:
    return {"object": "console.session", "who": s.who, "csrf_token": s.csrf,
            "expires_in_s": round(store.expires_in(s))}


async def whoami(request: web.Request) -> web.Response:
    s = current(request)
    return web.json_response(_describe(request.app[SESSIONS], s))


async def sign_out(request: web.Request) -> web.Response:
    s = current(request)
    check_csrf(request, s)
    request.app[SESSIONS].drop(s.sid)
    audit.info("console action=sign_out who=%s", s.who,
               extra={"audit": {"action": "console_sign_out", "who": s.who}})
    resp = web.json_response({"object": "console.session", "signed_out": True})
    for name in (COOKIE, CSRF_COOKIE):
        resp.del_cookie(name, path=COOKIE_PATH)
    return resp


def setup(app: web.Application) -> None:
    server = app[CONFIG].server
    app[SESSIONS] = SessionStore(server.console_session_ttl_s, server.console_idle_s)
    app.router.add_post("/console/api/session", sign_in)
    app.router.add_get("/console/api/session", whoami)
    app.router.add_delete("/console/api/session", sign_out)
