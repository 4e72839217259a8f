"""CallSession: one call, from setup to teardown.

It owns the downstream leg, the upstream connection, the recorder and every task and timer
of the call. It knows the call and the protocol's events, nothing about transports.
Events are routed through dispatch tables keyed by event type.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.audio.formats import WireFormat, bytes_per_ms
from gateway.audio.levels import measure, measure_bytes
from gateway.config import Config, Profile
from gateway.errors import error_event
from gateway.ids import new_id
from gateway.legs.base import Leg
from gateway.legs.playout import QueuedFrame
from gateway.obs.logs import call_context, call_id_var
from gateway.obs.metrics import Metrics, bounded
from gateway.upstream.client import (
    GATEWAY_EVENT_PREFIX,
    UpstreamClosed,
    UpstreamConnection,
    gateway_event_id,
)

from . import policy
from .state import (
    CLIENT_EVENT_TYPES,
    CallStats,
    DirectionMetrics,
    ItemState,
    SessionHooks,
    wire_format_of,
)

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
        self._tool_lookup = tool_lookup
        self._on_closed = on_closed
        self.stats = CallStats()
        self.end_reason: str | None = None
        self.leg: Leg | None = None
        self.upstream: UpstreamConnection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._closing = False
        self.closed = asyncio.Event()
        self._append_buf = bytearray()
        #: The upstream's audio format (PCM 24 kHz, or G.711 passed through for phones).
        self.wire_format: WireFormat = wire_format_of(session)
        self._append_bytes = config.upstream.append_ms * bytes_per_ms(self.wire_format)
        self._items: dict[str, ItemState] = {}
        self.active_response: str | None = None
        self._speech_stopped_at: float | None = None
        self._first_frame_pending = False
        self._response_created_at: dict[str, float] = {}
        self._bargein_at: float | None = None
        self.observers: list[Any] = []  # recorder, guards: see attach_observer()
        self._upstream_handlers: dict[str, Callable[[Event], None]] = {
            "session.created": self._drop,
            "session.updated": self._up_session_updated,
            "response.created": self._up_response_created,
            "response.done": self._up_response_done,
            "response.output_audio.delta": self._up_audio_delta,
            "response.output_audio.done": self._up_audio_done,
            "response.output_audio_transcript.delta": self._up_transcript_delta,
            "response.output_audio_transcript.done": self._up_transcript_done,
            "input_audio_buffer.speech_started": self._up_speech_started,
            "input_audio_buffer.speech_stopped": self._up_speech_stopped,
            "conversation.item.input_audio_transcription.completed": self._up_caller_text,
            "error": self._up_error,
        }
        self._client_handlers: dict[str, Callable[[Event], None]] = {
            "session.update": self._client_session_update,
            "output_audio_buffer.clear": self._client_output_clear,
            "conversation.item.create": self._client_item_create,
            "input_audio_buffer.append": self._client_append,
        }
        self.hooks = SessionHooks()
        self._m_in = DirectionMetrics(metrics, "in")
        self._m_out = DirectionMetrics(metrics, "out")
        self.resume_token = new_id("rs_" + config.server.instance_id, 18)
        self.suspended = False
        self._leg_closers: set[asyncio.Task[None]] = set()
        self._grace: asyncio.TimerHandle | None = None
        self._agent_base_ms: float | None = None  # call time of the current leg's offset 0
        self._caller_cursor_ms: float | None = None
        self.caller: str | None = None
        #: Set by the continuity keeper: called when a retryable upstream loss happens.
        self.on_upstream_lost: Callable[[str], None] | None = None

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
                             "session": self._client_session(effective)})
        if self.transport == "webrtc":
            self.send_to_client({"type": "gateway.call.created", "event_id": new_id("event"),
                                 "call_id": self.call_id, "resume_token": self.resume_token})
        self.metrics.active_calls.labels(self.transport).inc()

    # -- resume -------------------------------------------------------------------------

    def suspend(self) -> None:
        """The caller's connection dropped: keep the call (upstream, recording) for the
        grace period and wait for the client to come back with its resume token."""
        grace = self.config.media.resume_grace_s
        if self._closing or self.suspended or grace <= 0 or self.leg is None:
            self.request_close("client_lost")
            return
        self.suspended = True
        # Nobody is listening: stop the agent and keep only what was heard.
        if self.leg.audio_active or self.active_response:
            self.interrupt(reason="client_lost")
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
        self._agent_base_ms = None
        self._caller_cursor_ms = None
        self.resume_token = new_id("rs_" + self.config.server.instance_id, 18)
        self.metrics.upstream_reconnects.labels("client_resumed").inc()
        self.note("reconnected", text="caller reconnected")
        self.send_to_client({"type": "session.created", "event_id": new_id("event"),
                             "session": self._client_session(self.effective)})
        self.send_to_client({"type": "gateway.call.resumed", "event_id": new_id("event"),
                             "call_id": self.call_id, "resume_token": self.resume_token})

    def call_ms(self) -> float:
        return (time.time() - self.stats.started_at) * 1000

    def _client_session(self, upstream_session: Any) -> Event:
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
        if self.leg is None or self._closing:
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
        handler = self._client_handlers.get(etype)
        if handler is not None:
            handler(event)
        elif self.upstream is not None:
            self.upstream.send(event)

    def _client_session_update(self, event: Event) -> None:
        eid = event.get("event_id")
        try:
            new = policy.apply_update(self.session, event.get("session"), self.profile,
                                      self._tool_lookup)
        except policy.PolicyError as e:
            self.client_error(e.code, e.message, param=e.param,
                              client_event_id=eid if isinstance(eid, str) else None)
            return
        self.session = new
        out: Event = {"type": "session.update", "session": policy.for_upstream(new)}
        if isinstance(eid, str):
            out["event_id"] = eid
        if self.upstream is not None:
            self.upstream.send(out)

    def _client_output_clear(self, event: Event) -> None:
        rid = self.interrupt(reason="client")
        self.send_to_client({"type": "output_audio_buffer.cleared", "event_id": new_id("event"),
                             "response_id": rid})

    def _client_item_create(self, event: Event) -> None:
        item = event.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call_output":
            for hook in self.hooks.function_output_guard:
                refusal = hook(item)
                if refusal is not None:
                    eid = event.get("event_id")
                    self.client_error("tool_output_refused", refusal, param="item.call_id",
                                      client_event_id=eid if isinstance(eid, str) else None)
                    return
        if self.upstream is not None:
            self.upstream.send(event)

    def _client_append(self, event: Event) -> None:
        eid = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        audio = event.get("audio")
        try:
            if not isinstance(audio, str):
                raise ValueError
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            self.client_error("invalid_audio", "input_audio_buffer.append needs 'audio' as "
                              "base64 PCM16.", param="audio", client_event_id=eid)
            return
        if len(pcm) % 2:
            self.client_error("invalid_audio", "PCM16 audio must have an even number of bytes.",
                              param="audio", client_event_id=eid)
            return
        if len(pcm) > 15 * 1024 * 1024:
            self.client_error("audio_too_large", "One append may carry at most 15 MiB.",
                              param="audio", client_event_id=eid)
            return
        self.on_caller_audio(np.frombuffer(pcm, dtype="<i2"))

    def on_caller_audio(self, pcm: npt.NDArray[np.int16], wire: bytes | None = None) -> None:
        """Caller audio as PCM16 24 kHz (levels, recording); ``wire`` is the same audio in
        the upstream's format when the leg already has it (µ-law from a phone), so it is
        passed through untouched."""
        if self._closing:
            return
        t0 = time.perf_counter()
        level = measure(pcm)
        m = self._m_in
        m.level.observe(level.rms_dbfs)
        m.peak.observe(level.peak_dbfs)
        if level.clipped:
            m.clipped.inc(level.clipped)
        data = pcm.tobytes()
        frame_ms = len(pcm) / 24
        m.seconds.inc(frame_ms / 1000)  # cost accrues as it happens, not at hang-up
        self.stats.caller_audio_ms += frame_ms
        # Caller audio is placed by a running cursor (no per-frame jitter), re-anchored to
        # the wall clock when it falls over 100 ms behind (a gap in the media, a reconnect)
        # or gets ahead of it at all (audio cannot have been spoken in the future).
        now_ms = self.call_ms()
        cur = self._caller_cursor_ms
        target = now_ms - frame_ms
        if cur is None or target - cur > 100 or cur - target > 20:
            cur = max(0.0, target)
        self._caller_cursor_ms = cur + frame_ms
        for obs in self.hooks.caller_audio:
            obs(data, level.rms_dbfs, cur)
        self._append_buf += wire if wire is not None else data
        if len(self._append_buf) >= self._append_bytes and self.upstream is not None:
            self.upstream.send_audio(base64.b64encode(self._append_buf).decode())
            self._append_buf.clear()
        m.frame.observe(time.perf_counter() - t0)

    def on_agent_frame(self, frame: QueuedFrame | None, offset_ms: float) -> None:
        if self._agent_base_ms is None:
            self._agent_base_ms = self.call_ms() - offset_ms
        offset_ms += self._agent_base_ms
        if frame is None:
            self._m_out.silent_frames.inc()
            if self._bargein_at is not None:
                self.metrics.barge_in_cutoff.observe(time.perf_counter() - self._bargein_at)
                self._bargein_at = None
            for obs in self.hooks.agent_audio:
                obs(None, offset_ms)
            return
        self.stats.agent_audio_ms += frame.audio_ms
        m = self._m_out
        m.speech_frames.inc()
        m.seconds.inc(frame.audio_ms / 1000)
        level = measure_bytes(frame.pcm)
        m.level.observe(level.rms_dbfs)
        m.peak.observe(level.peak_dbfs)
        if level.clipped:
            m.clipped.inc(level.clipped)
        if self._first_frame_pending and self._speech_stopped_at is not None:
            self._first_frame_pending = False
            self.metrics.turn_latency.labels(self.transport).observe(
                time.monotonic() - self._speech_stopped_at)
        for obs in self.hooks.agent_audio:
            obs(frame, offset_ms)

    def on_playout(self, started: bool, response_id: str) -> None:
        etype = "output_audio_buffer.started" if started else "output_audio_buffer.stopped"
        self.send_to_client({"type": etype, "event_id": new_id("event"),
                             "response_id": response_id})
        for obs in self.hooks.playout:
            obs(started)

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
                handler = self._upstream_handlers.get(event["type"], self._forward)
                handler(event)
        except UpstreamClosed as e:
            if conn is not self.upstream or self._closing:
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

    def _forward(self, event: Event) -> None:
        for obs in self.hooks.upstream_event:
            obs(event)
        self.send_to_client(event)

    def _drop(self, event: Event) -> None:
        return

    def _up_session_updated(self, event: Event) -> None:
        event = dict(event)
        event["session"] = self._client_session(event.get("session"))
        self._forward(event)

    def _up_response_created(self, event: Event) -> None:
        rid = str((event.get("response") or {}).get("id") or "")
        self.active_response = rid
        self._response_created_at[rid] = time.monotonic()
        self._forward(event)

    def _up_response_done(self, event: Event) -> None:
        resp = event.get("response") or {}
        rid = str(resp.get("id") or "")
        if self.active_response == rid:
            self.active_response = None
        self._response_created_at.pop(rid, None)
        self._forward(event)

    def _up_audio_delta(self, event: Event) -> None:
        try:
            pcm = base64.b64decode(event.get("delta", ""), validate=True)
        except (binascii.Error, ValueError):
            self.metrics.upstream_errors.labels("bad_audio_delta").inc()
            return
        item_id = str(event.get("item_id", ""))
        rid = str(event.get("response_id", ""))
        st = self._items.setdefault(item_id, ItemState(rid))
        if st.received_ms == 0:  # the item's first audio
            created = self._response_created_at.get(rid)
            if created is not None:
                self.metrics.upstream_ttfa.observe(time.monotonic() - created)
        st.received_ms += len(pcm) / bytes_per_ms(self.wire_format)
        if st.truncated_ms is not None:
            return  # cut by a barge-in: what the upstream still sends must not be played
        if self.leg is not None:
            self.leg.play_audio(pcm, item_id, rid)
            if self.leg.forwards_audio_events:
                self._forward(event)

    def _up_audio_done(self, event: Event) -> None:
        if self.leg is not None:
            self.leg.end_audio(str(event.get("item_id", "")))
        self._forward(event)

    def _up_transcript_delta(self, event: Event) -> None:
        # The transcript may run ahead of the audio: the item's state starts with either.
        st = self._items.setdefault(str(event.get("item_id", "")),
                                    ItemState(str(event.get("response_id", ""))))
        st.transcript += str(event.get("delta", ""))
        self._forward(event)

    def _up_transcript_done(self, event: Event) -> None:
        item_id = str(event.get("item_id", ""))
        st = self._items.setdefault(item_id, ItemState(str(event.get("response_id", ""))))
        st.transcript = str(event.get("transcript", st.transcript))
        for obs in self.hooks.agent_text:
            obs(item_id, st)
        self._forward(event)

    def _up_speech_started(self, event: Event) -> None:
        if self.leg is not None and self.leg.audio_active:
            rid = self.interrupt(reason="barge_in")
            self.send_to_client({"type": "output_audio_buffer.cleared",
                                 "event_id": new_id("event"), "response_id": rid})
        self._speech_stopped_at = None
        self._forward(event)

    def _up_speech_stopped(self, event: Event) -> None:
        self._speech_stopped_at = time.monotonic()
        self._first_frame_pending = True
        self._forward(event)

    def _up_caller_text(self, event: Event) -> None:
        for obs in self.hooks.caller_text:
            obs(str(event.get("item_id", "")), str(event.get("transcript", "")))
        self._forward(event)

    def _up_error(self, event: Event) -> None:
        err = event.get("error") or {}
        code = str(err.get("code") or err.get("type") or "unknown")
        self.metrics.upstream_errors.labels(bounded(code)).inc()
        ref = err.get("event_id")
        if isinstance(ref, str) and ref.startswith(GATEWAY_EVENT_PREFIX):
            for obs in self.hooks.upstream_event:
                obs(event)
            # An error about an event the gateway itself sent (a cancel racing the
            # upstream's own, a truncate past the end): the client never sent it.
            log.debug("upstream refused a gateway event: %s", code)
            return
        self._forward(event)

    # -- interruption -------------------------------------------------------------------

    def interrupt(self, *, reason: str) -> str:
        """Stop agent audio now and make the upstream remember only what was heard.

        Returns the id of the response whose audio was cut ("" when none)."""
        if self.leg is None or self.upstream is None:
            return ""
        self._bargein_at = time.perf_counter()
        item, played_ms = self.leg.interrupt()
        rid = self.active_response or ""
        if self.active_response:
            self.upstream.send({"type": "response.cancel",
                                "event_id": gateway_event_id()})
        if item:
            st = self._items.get(item)
            rid = st.response_id if st is not None else rid
            heard = int(min(played_ms, st.received_ms if st else played_ms))
            if st is not None:
                st.truncated_ms = heard
            self.upstream.send({"type": "conversation.item.truncate",
                                "event_id": gateway_event_id(),
                                "item_id": item, "content_index": 0, "audio_end_ms": heard})
            for obs in self.hooks.interrupted:
                obs(item, heard, st)
        self.stats.interruptions += 1
        self.metrics.interruptions.labels(self.transport).inc()
        return rid

    # -- teardown -----------------------------------------------------------------------

    def request_close(self, reason: str) -> None:
        if not self._closing:
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
        if self._closing:
            await self.closed.wait()
            return
        self._closing = True
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
