"""One GPT-Live WebSocket connection (``/v1/live/sessions``): full duplex.

Like the Realtime ``Session``: a reader (socket -> bounded inbox), a dispatcher (inbox ->
handlers strictly in order) and a writer (bounded outbox -> socket), plus the speaker's task
and at most one pending acknowledgement timer, all owned here and cancelled together. Input
audio always reaches the listener (VAD + ASR, in the session's worker thread), also while the
agent speaks: a caller starting to speak stops the agent (barge-in), the finished turn is
transcribed (``session.input_transcript.delta``) and answered.

The session timeline (``start_ms``/``end_ms``/``offset_ms``) is the input audio received, in
ms: a client streaming audio in real time makes it the wall clock since ``session.started``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

from .agent import LOOKUP, SCHEDULE, Agent, Reply, ToolCall, Turn
from .config import MODEL_NAME, EngineConfig
from .engine import Engine
from .listener import Listener, ListenEvent, SpeechStarted, SpeechStopped
from .live_protocol import CloseReason, LiveConfig, live_error, live_event, refused
from .live_speech import LiveSpeaker
from .protocol import ClientError, Json, client_event_id, event_type, new_id, parse_client_event
from .sessionconfig import TurnDetection

log = logging.getLogger(__name__)
T = TypeVar("T")

Handler = Callable[["LiveSession", Json], Awaitable[None]]
#: (session, delegation, response id) -> the call_id the client answers.
FunctionBackend = Callable[["LiveSession", "Delegation", str], Awaitable[str]]
Phase = Literal["new", "started", "closed"]

#: What the agent says when it hands work off and nothing else was said for it.
ACKNOWLEDGEMENT = "One moment, please."
#: The tools the agent delegates under client delegation (Live declares none for the client):
#: the canonical slot names the client finds in the caller's transcript.
CLIENT_TOOLS: list[Json] = [{"name": LOOKUP}, {"name": SCHEDULE}]
#: After ``session.closed``, commands already in flight are answered (``session_closed``)
#: for this long before the socket closes.
CLOSE_GRACE_S = 0.2
#: Live has no turn-detection settings: the engine listens with server VAD's defaults.
TURNS = TurnDetection("server_vad")


@dataclass(slots=True)
class Delegation:
    id: str
    call: ToolCall
    call_id: str | None = None  # responses delegation: the backend's function call
    answered: bool = False


class LiveSession:
    def __init__(self, ws: web.WebSocketResponse, engine: Engine, settings: EngineConfig,
                 handlers: Mapping[str, Handler], backend: FunctionBackend) -> None:
        self.ws = ws
        self.engine = engine
        self.settings = settings
        self.handlers = handlers
        #: Runs a tool call as the Responses backend would (``live_backend``; passed in by the
        #: server, as the handlers are, so this module imports neither).
        self.backend = backend
        self.id = new_id("sess")
        self.phase: Phase = "new"
        self.config: LiveConfig | None = None
        self.started_at = 0
        self.agent = Agent()
        self.muted = False
        self.delegations: dict[str, Delegation] = {}
        self.pending_outputs: list[tuple[str, str]] = []  # (tool name, output) for response.create
        self.speaker: LiveSpeaker | None = None
        self._ack: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[str | None] = asyncio.Queue(settings.input_queue_chunks)
        self._outbox: asyncio.Queue[Json | None] = asyncio.Queue(settings.outbox_events)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="localrt-live")
        self._listener: Listener | None = None

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def listener(self) -> Listener:
        assert self._listener is not None
        return self._listener

    @property
    def cfg(self) -> LiveConfig:
        assert self.config is not None
        return self.config

    def clock(self) -> int:
        """Now on the session timeline (ms of input audio received)."""
        return self._listener.position // 16 if self._listener is not None else 0

    async def emit(self, event: Json) -> None:
        await self._outbox.put(event)

    async def in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def resource(self) -> Json:
        return self.cfg.resource(self.id, self.started_at, MODEL_NAME)

    async def run(self) -> None:
        self._listener = await self.in_worker(
            lambda: Listener(self.engine.vads.acquire(), self.engine.asr.recognizer()))
        tasks = {asyncio.create_task(self._read_loop(), name="live-read"),
                 asyncio.create_task(self._dispatch_loop(), name="live-dispatch"),
                 asyncio.create_task(self._write_loop(), name="live-write")}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and (exc := task.exception()) is not None:
                    log.error("live session %s failed", self.id, exc_info=exc)
        finally:
            self.cancel_acknowledgement()
            if self.speaker is not None:
                await self.speaker.close()
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            if (listener := self._listener) is not None:
                self._worker.submit(lambda: self.engine.vads.release(listener.close()))
            self._worker.shutdown(wait=False)
            if not self.ws.closed:
                await self.ws.close()

    async def close(self) -> None:
        await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    async def _read_loop(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                await self._inbox.put(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await self._inbox.put(None)
            else:
                return

    async def _write_loop(self) -> None:
        while True:
            event = await self._outbox.get()
            if event is None:  # session.closed went out: end the connection, after answering
                await asyncio.sleep(CLOSE_GRACE_S)  # commands already on their way
                while not self._outbox.empty():
                    if (late := self._outbox.get_nowait()) is not None:
                        await self.ws.send_str(json.dumps(late))
                await self.ws.close()
                return
            try:
                await self.ws.send_str(json.dumps(event))
            except ConnectionError:
                return

    async def _dispatch_loop(self) -> None:
        while True:
            raw = await self._inbox.get()
            event_id: str | None = None
            try:
                if raw is None:
                    raise refused("invalid_type", "Binary frames are not supported: send "
                                  "client events as JSON text.")
                event = parse_client_event(raw)
                event_id = client_event_id(event)
                await self._dispatch(event_type(event), event)
            except ClientError as exc:
                await self.emit(live_error(exc, event_id))
            except Exception:  # a bug here must not silently end the caller's session
                log.exception("live session %s: handling an event failed", self.id)
                await self.emit(live_error(ClientError(
                    "server_error", "The local engine failed to handle this event; see its "
                    "log.", type_="server_error"), event_id))

    async def _dispatch(self, kind: str, event: Json) -> None:
        handler = self.handlers.get(kind)
        if handler is None:
            raise refused("invalid_value", f"Invalid value: '{kind}'. Supported values are: "
                          f"{', '.join(sorted(self.handlers))}.", "type")
        if self.phase == "closed":
            raise refused("session_closed", f"The session is closed; '{kind}' was ignored.")
        if self.phase == "new" and kind != "session.start":
            raise refused("session_not_started", f"Send session.start and wait for "
                          f"session.started before '{kind}'.")
        await handler(self, event)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, config: LiveConfig, client_id: str | None) -> None:
        self.config = config
        self.started_at = int(time.time())
        await self.in_worker(self.listener.configure, config.input_format, TURNS)
        self.speaker = LiveSpeaker(self.engine.voice, self.settings, self.emit, live_event,
                                   config.input_format, self.clock)
        self.speaker.start()
        self.phase = "started"
        await self.emit(with_client_id(live_event("session.started", session=self.resource()),
                                       client_id))

    async def finish(self, reason: CloseReason, client_id: str | None) -> None:
        """``session.closed`` with the final snapshot and usage, then the socket closes."""
        self.phase = "closed"
        self.cancel_acknowledgement()
        if self.speaker is not None:
            await self.speaker.stop()
        await self.emit(with_client_id(live_event(
            "session.closed", reason=reason, session=self.resource(),
            usage={"seconds": round(self.clock() / 1000, 3)}), client_id))
        await self._outbox.put(None)

    # -- input turns ---------------------------------------------------------------------------

    async def on_listen_events(self, events: list[ListenEvent]) -> None:
        for ev in events:
            if isinstance(ev, SpeechStarted):
                if self.speaker is not None and await self.speaker.stop():
                    log.debug("live %s: barge-in at %d ms", self.id, ev.audio_start_ms)
                self.cancel_acknowledgement()
            elif isinstance(ev, SpeechStopped):
                transcript = await self.in_worker(self.engine.asr.finalize, ev.utterance)
                text = transcript.text
                await self.emit(live_event("session.input_transcript.delta",
                                           delta=text, start_ms=ev.audio_start_ms,
                                           end_ms=ev.audio_end_ms))
                await self.answer(Turn("user", text=text, previous_reply=self.last_reply()))

    def last_reply(self) -> str:
        return " ".join(self.speaker.heard[-3:]) if self.speaker else ""

    async def answer(self, turn: Turn) -> None:
        cfg = self.cfg
        if cfg.delegation == "responses":
            tools = cfg.function_tools()
            choice = str((cfg.responses or {}).get("tool_choice") or "auto")
        else:
            tools, choice = CLIENT_TOOLS, "auto"
        reply: Reply = self.agent.reply(turn, tools, choice)
        if reply.tool_call is not None:
            await self.delegate(reply.tool_call)
        else:
            self.say(reply.text)

    def say(self, text: str) -> None:
        if self.speaker is not None:
            self.speaker.say(text)

    # -- delegation ----------------------------------------------------------------------------

    async def delegate(self, call: ToolCall) -> None:
        cfg = self.cfg
        deleg = Delegation(new_id("deleg"), call)
        self.delegations[deleg.id] = deleg
        meta: Json = {"id": deleg.id, "target": cfg.delegation, "type": "delegation"}
        if cfg.delegation == "responses":
            meta["response_id"] = new_id("resp")
        await self.emit(live_event("session.delegation.created", delegation=meta,
                                   offset_ms=self.clock()))
        if cfg.delegation == "responses":
            deleg.call_id = await self.backend(self, deleg, str(meta["response_id"]))
        self._schedule_acknowledgement(cfg.ack_delay_ms)

    def _schedule_acknowledgement(self, delay_ms: int) -> None:
        self.cancel_acknowledgement()

        async def later() -> None:
            await asyncio.sleep(delay_ms / 1000)
            self.say(ACKNOWLEDGEMENT)

        self._ack = asyncio.create_task(later(), name="live-ack")

    def cancel_acknowledgement(self) -> None:
        """Live: any commentary or thinking appended cancels pending acknowledgements."""
        if self._ack is not None and not self._ack.done():
            self._ack.cancel()
        self._ack = None

    def delegation(self, delegation_id: str | None, param: str) -> Delegation | None:
        if delegation_id is None:
            return None
        if self.cfg.delegation == "responses":
            raise refused("invalid_value", "delegation_id is not accepted with Responses "
                          "delegation; answer the backend with response.item.create.", param)
        found = self.delegations.get(delegation_id)
        if found is None:
            raise refused("invalid_value", f"Unknown delegation '{delegation_id}'.", param)
        return found


def with_client_id(event: Json, client_id: str | None) -> Json:
    if client_id is not None:
        event["client_event_id"] = client_id
    return event

