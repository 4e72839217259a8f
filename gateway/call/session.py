"""CallSession: one call, from setup to teardown.

It owns the downstream leg, the upstream connection, the recorder and every task and timer
of the call. It knows the call and the protocol's events, nothing about transports.
Events are routed through dispatch tables keyed by event type; the handlers live in rooms of
their own that the session composes: :class:`ClientEvents` (what a client's events do),
:class:`UpstreamEvents` (what the upstream's do), :class:`CallerIntake` (caller audio in) and
:class:`AgentAudio` (agent audio out, what was heard, barge-in).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.audio.formats import WireFormat
from gateway.config import Config, Profile
from gateway.errors import error_event
from gateway.ids import new_id
from gateway.legs.base import Leg
from gateway.obs.logs import call_context, call_id_var
from gateway.obs.metrics import Metrics, bounded
from gateway.upstream.client import UpstreamClosed, UpstreamConnection

from . import policy
from .agent_audio import AgentAudio
from .client_events import ClientEvents
from .intake import CallerIntake
from .state import CLIENT_EVENT_TYPES, CallStats, ItemState, SessionHooks, wire_format_of
from .upstream_events import UpstreamEvents

log = logging.getLogger("gateway.session")

Event = dict[str, Any]


class CallSession:
    def __init__(self, *, call_id: str, config: Config, profile: Profile, metrics: Metrics,
                 transport: str, dialect: str, session: Event,
                 tool_lookup: policy.ToolLookup,
                 on_closed: Callable[[CallSession, str], Awaitable[None]] | None = None) -> None:
        self.call_id = call_id
        # Everything this call's setup starts from here on (aiortc's tasks included) logs
        # with its id: tasks copy the context they are created in.
        call_id_var.set(call_id)
        self.config = config
        self.profile = profile
        self.metrics = metrics
        self.transport = transport
        self.dialect = dialect
        self.session = session  # client-visible GA session config
        self.tool_lookup = tool_lookup
        self._on_closed = on_closed
        self.stats = CallStats()
        self.end_reason: str | None = None
        self.leg: Leg | None = None
        self.upstream: UpstreamConnection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self.closing = False
        self.closed = asyncio.Event()
        #: The upstream's audio format (PCM 24 kHz, or G.711 passed through for phones).
        self.wire_format: WireFormat = wire_format_of(session)
        self.active_response: str | None = None
        self.hooks = SessionHooks()
        self.resume_token = new_id("rs_" + config.server.instance_id, 18)
        self.suspended = False
        self._leg_closers: set[asyncio.Task[None]] = set()
        self._grace: asyncio.TimerHandle | None = None
        self.caller: str | None = None
        #: Set by the continuity keeper: called when a retryable upstream loss happens.
        self.on_upstream_lost: Callable[[str], None] | None = None
        # The rooms this session composes.
        self.intake = CallerIntake(self)
        self.agent = AgentAudio(self)
        self.client_events = ClientEvents(self, self.agent, self.intake)
        self.upstream_events = UpstreamEvents(self, self.agent)
        # The leg's sink (:class:`gateway.legs.base.LegSink`), bound once: these run per frame.
        self.on_caller_audio = self.intake.push
        self.on_agent_frame = self.agent.on_frame
        self.on_playout = self.agent.on_playout

    # -- setup --------------------------------------------------------------------------

    def attach(self, leg: Leg, upstream: UpstreamConnection, effective: Event) -> None:
        """Start the call once both legs are up. ``effective`` is upstream's session."""
        self.leg = leg
        self.upstream = upstream
        self._spawn(self._upstream_reader(), "upstream-reader")
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(self.config.guards.max_call_s,
                                            self.request_close, "max_duration"))
        self.effective = effective
        self.send_to_client({"type": "session.created", "event_id": new_id("event"),
                             "session": self.client_session(effective)})
        if self.transport == "webrtc":
            self.send_to_client({"type": "gateway.call.created", "event_id": new_id("event"),
                                 "call_id": self.call_id, "resume_token": self.resume_token})
        self.metrics.active_calls.labels(self.transport).inc()

    # -- resume -------------------------------------------------------------------------

    def suspend(self) -> None:
        """The caller's connection dropped: keep the call (upstream, recording) for the
        grace period and wait for the client to come back with its resume token."""
        grace = self.config.media.resume_grace_s
        if self.closing or self.suspended or grace <= 0 or self.leg is None:
            self.request_close("client_lost")
            return
        self.suspended = True
        # Nobody is listening: stop the agent and keep only what was heard.
        if self.leg.audio_active or self.active_response:
            self.agent.interrupt(reason="client_lost")
        old, self.leg = self.leg, None
        # Not one of the cancellable tasks: a peer's close must run to its end.
        closer = asyncio.create_task(old.close(), name=f"leg-close:{self.call_id}")
        self._leg_closers.add(closer)
        closer.add_done_callback(self._leg_closers.discard)
        self.note("disconnected", text=f"caller connection lost; holding {grace:g} s")
        self._grace = asyncio.get_running_loop().call_later(grace, self.request_close,
                                                            "client_lost")

    def resume(self, leg: Leg) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        self.leg = leg
        self.suspended = False
        self.agent.base_ms = None
        self.intake.cursor_ms = None
        self.resume_token = new_id("rs_" + self.config.server.instance_id, 18)
        self.metrics.upstream_reconnects.labels("client_resumed").inc()
        self.note("reconnected", text="caller reconnected")
        self.send_to_client({"type": "session.created", "event_id": new_id("event"),
                             "session": self.client_session(self.effective)})
        self.send_to_client({"type": "gateway.call.resumed", "event_id": new_id("event"),
                             "call_id": self.call_id, "resume_token": self.resume_token})

    def call_ms(self) -> float:
        return (time.time() - self.stats.started_at) * 1000

    def client_session(self, upstream_session: Any) -> Event:
        out = policy.for_client(upstream_session, self.profile)
        # The upstream's own model name never reaches a client.
        return out

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=f"{name}:{self.call_id}",
                                                       context=call_context(self.call_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- client -> gateway --------------------------------------------------------------

    def send_to_client(self, event: Event) -> None:
        if self.leg is None or self.closing:
            return
        events = [event]
        for hook in self.hooks.to_client:
            events = [out for e in events for out in hook(e)]
        for e in events:
            self.leg.send_event(e)

    def client_error(self, code: str, message: str, *, param: str | None = None,
                     client_event_id: str | None = None) -> None:
        self.metrics.client_errors.labels(code).inc()  # the gateway's own codes: bounded
        self.send_to_client(error_event(code, message, param=param,
                                        client_event_id=client_event_id))

    def on_client_text(self, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError:
            self.client_error("invalid_json", "The event is not valid JSON.")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.client_error("invalid_event", "An event must be a JSON object with a 'type'.",
                              param="type")
            return
        events = [event]
        for hook in self.hooks.from_client:
            events = [out for e in events for out in hook(e)]
        for e in events:
            self.on_client_event(e)

    def on_client_event(self, event: Event) -> None:
        etype = event["type"]
        eid = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        if etype not in CLIENT_EVENT_TYPES:
            self.client_error("unknown_event_type", f"Unknown event type '{etype}'.",
                              param="type", client_event_id=eid)
            return
        handler = self.client_events.table.get(etype)
        if handler is not None:
            handler(event)
        elif self.upstream is not None:
            self.upstream.send(event)

    def note(self, kind: str, **fields: Any) -> None:
        """A transcript-worthy moment (tool call, filler, idle prompt...) for observers."""
        offset_ms = (time.time() - self.stats.started_at) * 1000
        for obs in self.hooks.notes:
            obs(kind, offset_ms, fields)

    def on_leg_gone(self, reason: str) -> None:
        if reason == "client_lost" and self.transport == "webrtc":
            self.suspend()
        else:
            self.request_close(reason)

    # -- upstream -> gateway ------------------------------------------------------------

    async def _upstream_reader(self) -> None:
        conn = self.upstream
        assert conn is not None
        try:
            while True:
                event = await conn.recv()
                if event["type"] == "error" and (event.get("error") or {}).get(
                        "code") == "session_expired":
                    raise UpstreamClosed("session_expired", "upstream session hit its limit")
                if self.hooks.upstream_gate and not all(g(event) for g in self.hooks.upstream_gate):
                    continue  # held back (a supervisor has the call: gateway/supervise.py)
                handler = self.upstream_events.table.get(event["type"], self.forward)
                handler(event)
        except UpstreamClosed as e:
            if conn is not self.upstream or self.closing:
                return  # replaced on purpose (rollover) or the call is ending
            log.info("upstream lost: %s", e.message)
            self.metrics.upstream_errors.labels(bounded(e.code)).inc()
            if self.on_upstream_lost is not None and e.retryable:
                self.on_upstream_lost(e.code)
            else:
                self.request_close("upstream_closed")

    def swap_upstream(self, new: UpstreamConnection) -> UpstreamConnection | None:
        """Continue the call on a new upstream connection; returns the old one to close."""
        old, self.upstream = self.upstream, new
        self.active_response = None
        self._spawn(self._upstream_reader(), "upstream-reader")
        return old

    def forward(self, event: Event) -> None:
        """An upstream event as the client sees it (observers first: tools, recorder)."""
        for obs in self.hooks.upstream_event:
            obs(event)
        self.send_to_client(event)

    def interrupt(self, *, reason: str) -> str:
        """Stop agent audio now (see :meth:`AgentAudio.interrupt`)."""
        return self.agent.interrupt(reason=reason)

    # -- teardown -----------------------------------------------------------------------

    def request_close(self, reason: str) -> None:
        if not self.closing:
            self._spawn_closer(reason)

    def _spawn_closer(self, reason: str) -> None:
        # The closer cannot be one of the session's own tasks (close() cancels those).
        task = asyncio.get_running_loop().create_task(self.close(reason),
                                                      name=f"close:{self.call_id}",
                                                      context=call_context(self.call_id))
        _CLOSERS.add(task)
        task.add_done_callback(_CLOSERS.discard)

    async def close(self, reason: str) -> None:
        """Idempotent teardown in a fixed order: intake, tasks, leg, hooks, upstream."""
        if self.closing:
            await self.closed.wait()
            return
        self.closing = True
        self.end_reason = reason
        for h in self._timers:
            h.cancel()
        if self._grace is not None:
            self._grace.cancel()
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.leg is not None:
            await self.leg.close()
        if self._leg_closers:
            await asyncio.gather(*self._leg_closers, return_exceptions=True)
        for fin in self.hooks.on_close:
            with contextlib.suppress(Exception):
                await fin(reason)
        if self.upstream is not None:
            with contextlib.suppress(Exception):
                await self.upstream.close()
        if self.upstream is not None:  # attach() counted it
            self.metrics.active_calls.labels(self.transport).dec()
        self.metrics.calls_total.labels(self.transport, reason).inc()
        if self._on_closed is not None:
            await self._on_closed(self, reason)
        self.closed.set()
        log.info("call ended: %s", reason)


_CLOSERS: set[asyncio.Task[None]] = set()


__all__ = ["CallSession", "ItemState", "SessionHooks"]
