"""The console's live feed: calls, levels and transcript lines pushed as Server-Sent Events.

Costs nothing while nobody watches: no task, no hook. With at least one subscriber a sampler
task runs every 250 ms: it reads what the call keeps anyway (the last frame's level of each
direction, the last turns' latency, flags) and publishes one ``calls`` event; it hooks each
call's transcript-rate hooks (``caller_text``, ``agent_text``, ``notes``, ``interrupted``:
a few calls a turn, never a frame) and unhooks them when the last subscriber leaves. Calls
on other instances come from the shared registry every 2 s (id, owner, transport, profile,
start: live levels and lines stay with the owner's own console).

Every event carries ``ts`` (server wall clock, ms) so the page can measure its delay. Each
subscriber has a bounded queue; a subscriber that falls behind (queue full) is dropped
with an ``event: dropped``, never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.call.session import CallSession
from gateway.call.state import ItemState
from gateway.supervise.supervision import attached

from .appkeys import CALLS, CONFIG, REGISTRY

TICK_S = 0.25
REMOTE_EVERY = 8  # ticks: the registry is read every 2 s
QUEUE_EVENTS = 64
BACKLOG_LINES = 50
HEARTBEAT_S = 15.0


def _now_ms() -> float:
    return time.time() * 1000


def _encode(event: str, data: dict[str, Any]) -> bytes:
    # default=str: a hook's odd field must never raise into the call that fired it.
    data_json = json.dumps(data, separators=(",", ":"), default=str)
    return f"event: {event}\ndata: {data_json}\n\n".encode()


@dataclass(eq=False)  # hashed by identity: kept in a set
class Subscriber:
    queue: asyncio.Queue[bytes | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_EVENTS))
    dropped: bool = False


class Watch:
    """The hooks the feed hangs on one call while someone watches, and its recent lines."""

    def __init__(self, feed: ConsoleFeed, call: CallSession) -> None:
        self.call = call
        self.feed = feed
        self.tool_running = False
        self.lines: deque[dict[str, Any]] = deque(maxlen=BACKLOG_LINES)
        h = call.hooks
        self._hooks: list[tuple[list[Any], Any]] = [
            (h.caller_text, self._caller_text), (h.agent_text, self._agent_text),
            (h.notes, self._note), (h.interrupted, self._interrupted)]
        for lst, fn in self._hooks:
            lst.append(fn)

    def detach(self) -> None:
        for lst, fn in self._hooks:
            with contextlib.suppress(ValueError):
                lst.remove(fn)

    def _line(self, kind: str, speaker: str, text: str, **extra: Any) -> None:
        line = {"call_id": self.call.call_id, "kind": kind, "speaker": speaker,
                "text": text, "offset_ms": round(self.call.call_ms()), "ts": _now_ms(),
                **extra}
        self.lines.append(line)
        self.feed.publish("line", line)

    def _caller_text(self, item_id: str, text: str) -> None:
        self._line("utterance", "caller", text)

    def _agent_text(self, item_id: str, st: ItemState) -> None:
        self._line("utterance", "agent", st.transcript, truncated=st.truncated_ms is not None)

    def _note(self, kind: str, offset_ms: float, fields: dict[str, Any]) -> None:
        self.tool_running = _TOOL_STATE.get(kind, self.tool_running)
        text = fields.get("text")
        speaker = fields.get("speaker")
        self._line(kind, speaker if isinstance(speaker, str) else "gateway",
                   text if isinstance(text, str) else "", tool=fields.get("tool"))

    def _interrupted(self, item_id: str, heard_ms: int, st: ItemState | None) -> None:
        self._line("interruption", "caller", f"agent cut off after {heard_ms} ms")


#: What a note says about a tool round in progress.
_TOOL_STATE = {"tool_call": True, "tool_result": False, "tool_skipped": False}

#: A call's state: the first that holds, in this order.
_STATES: tuple[tuple[str, Callable[[CallSession, Watch | None], bool]], ...] = (
    ("suspended", lambda c, w: c.suspended),
    ("taken over", lambda c, w: (s := attached(c)) is not None and s.takeover is not None),
    ("tool running", lambda c, w: w is not None and w.tool_running),
    ("talking", lambda c, w: c.active_response is not None or (
        c.leg is not None and c.leg.audio_active)),
    ("listening", lambda c, w: True),
)


def call_row(call: CallSession, watch: Watch | None, instance: str) -> dict[str, Any]:
    sup = attached(call)
    return {
        "id": call.call_id, "instance": instance, "local": True,
        "transport": call.transport, "profile": call.profile.name, "caller": call.caller,
        "started_at": call.stats.started_at,
        "state": next(name for name, holds in _STATES if holds(call, watch)),
        "level_in": round(call.intake.last_rms_dbfs, 1),
        "level_out": round(call.agent.last_rms_dbfs, 1),
        "latency_ms": [round(x * 1000) for x in call.agent.latencies],
        "listeners": len(sup.listeners) if sup is not None else 0,
    }


class ConsoleFeed:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.subscribers: set[Subscriber] = set()
        self.watches: dict[str, Watch] = {}
        self._task: asyncio.Task[None] | None = None
        self._remote: list[dict[str, Any]] = []
        self.dropped = 0

    # -- subscribers ---------------------------------------------------------------------------

    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        self.subscribers.add(sub)
        if self._task is None:
            self._task = asyncio.create_task(self._sampler(), name="console-feed")
        return sub

    async def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        if not self.subscribers:
            await self._stop()

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for w in self.watches.values():
            w.detach()
        self.watches.clear()

    async def close(self) -> None:
        for sub in list(self.subscribers):
            self._drop(sub)
        self.subscribers.clear()
        await self._stop()

    def _drop(self, sub: Subscriber) -> None:
        sub.dropped = True
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        raw = _encode(event, data)  # encoded once for every subscriber
        for sub in list(self.subscribers):
            try:
                sub.queue.put_nowait(raw)
            except asyncio.QueueFull:
                self.subscribers.discard(sub)
                self.dropped += 1
                self._drop(sub)

    # -- sampling ------------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """Every call's row; while someone subscribes, each local call is watched (hooked)."""
        instance = self.app[CONFIG].server.instance_id
        watching = bool(self.subscribers)
        rows = []
        live = set()
        for call in self.app[CALLS]:
            if not isinstance(call, CallSession) or call.closing:
                continue
            live.add(call.call_id)
            watch = self.watches.get(call.call_id)
            if watch is None and watching:
                watch = self.watches[call.call_id] = Watch(self, call)
            rows.append(call_row(call, watch, instance))
        for gone in [cid for cid in self.watches if cid not in live]:
            self.watches.pop(gone).detach()
        return rows + [r for r in self._remote if r["id"] not in live]

    async def _refresh_remote(self) -> None:
        me = self.app[CONFIG].server.instance_id
        infos = await self.app[REGISTRY].list_calls()
        self._remote = [{"id": i.call_id, "instance": i.instance_id, "local": False,
                         "transport": i.transport, "profile": i.profile, "caller": None,
                         "started_at": i.started_at, "state": "on another instance",
                         "level_in": None, "level_out": None, "latency_ms": [],
                         "listeners": None}
                        for i in infos if i.instance_id != me]

    async def _sampler(self) -> None:
        n = 0
        while True:
            if n % REMOTE_EVERY == 0:
                with contextlib.suppress(Exception):  # a registry hiccup skips a refresh
                    await self._refresh_remote()
            self.publish("calls", {"ts": _now_ms(), "calls": self.snapshot()})
            n += 1
            await asyncio.sleep(TICK_S)

    def backlog(self) -> list[dict[str, Any]]:
        lines = [ln for w in self.watches.values() for ln in w.lines]
        return sorted(lines, key=lambda ln: float(ln["ts"]))[-BACKLOG_LINES * 4:]


FEED = web.AppKey("console_feed", ConsoleFeed)


async def stream(request: web.Request, alive: Callable[[], bool]) -> web.StreamResponse:
    """``GET /console/api/feed``: the SSE stream; ``alive`` says whether the session lasts."""
    feed = request.app[FEED]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    sub = feed.subscribe()
    try:
        feed.snapshot()  # hooks the calls now, so no line is missed before the first tick
        await resp.write(_encode("hello", {"ts": _now_ms(), "retry_ms": 2000,
                                           "lines": feed.backlog()}))
        while True:
            try:
                raw = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
            except TimeoutError:
                raw = b": keep-alive\n\n"
            if raw is None:
                await resp.write(_encode("dropped", {"ts": _now_ms()}))
                break
            if not alive():
                await resp.write(_encode("expired", {"ts": _now_ms()}))
                break
            await resp.write(raw)
    except ConnectionResetError:
        pass  # the page went away
    finally:
        await feed.unsubscribe(sub)
    return resp


async def _close(app: web.Application) -> None:
    await app[FEED].close()  # at shutdown, before handlers are cancelled: streams end


def setup(app: web.Application) -> None:
    app[FEED] = ConsoleFeed(app)
    app.on_shutdown.append(_close)
