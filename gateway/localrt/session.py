"""One WebSocket connection: a Realtime session.

Three tasks, awaited together and cancelled together: the reader (socket -> bounded inbox),
the dispatcher (inbox -> handlers, strictly in arrival order, so a ``commit`` is handled after
the appends before it and a ``response.create`` after the commit), and the writer (bounded
outbox -> socket). Heavy input work (resampling, VAD, ASR) runs in the session's own
single-thread executor; responses run as their own tasks and cancel cooperatively.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

from .agent import Agent, Turn
from .asr import Utterance
from .audioio import wire_rate
from .config import EngineConfig
from .conversation import Conversation, Item
from .engine import Engine
from .listener import Listener, ListenEvent, Pause, SpeechStarted
from .params import response_params
from .protocol import (
    ClientError,
    Json,
    client_event_id,
    error_event,
    event_type,
    new_id,
    parse_client_event,
    server_event,
)
from .response import Prefetch, ResponseParams, ResponseRun
from .sessionconfig import SessionConfig
from .tts import split_sentences

log = logging.getLogger(__name__)
T = TypeVar("T")

_BINARY = object()  # inbox marker for a binary frame

Handler = Callable[["Session", Json], Awaitable[None]]


class Session:
    def __init__(self, ws: web.WebSocketResponse, engine: Engine, settings: EngineConfig,
                 handlers: Mapping[str, Handler]) -> None:
        self.ws = ws
        #: Client event type -> handler (``handlers.HANDLERS``, passed in by the server so
        #: this module does not import the handlers that import it).
        self._handlers = handlers
        self.engine = engine
        self.settings = settings
        self.id = new_id("sess")
        self.config = SessionConfig()
        self.configured = False
        self.conversation = Conversation()
        self.agent = Agent()
        self.active: ResponseRun | None = None
        self.speech_item_id: str | None = None
        self._runs: set[ResponseRun] = set()
        self._inbox: asyncio.Queue[Any] = asyncio.Queue(settings.input_queue_chunks)
        self._outbox: asyncio.Queue[Json] = asyncio.Queue(settings.outbox_events)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="localrt-session")
        self.prefetch = Prefetch(engine.voice)
        self._listener: Listener | None = None

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def listener(self) -> Listener:
        assert self._listener is not None
        return self._listener

    async def emit(self, event: Json) -> None:
        await self._outbox.put(event)

    async def in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def _release_models(self) -> None:
        if self._listener is not None:
            self.engine.vads.release(self._listener.close())

    def _make_listener(self) -> Listener:
        return Listener(self.engine.vads.acquire(), self.engine.asr.recognizer())

    async def run(self) -> None:
        self._listener = await self.in_worker(self._make_listener)
        await self.in_worker(self.listener.configure, self.config.input_format,
                             self.config.turn_detection)
        tasks = {asyncio.create_task(self._read_loop(), name="localrt-read"),
                 asyncio.create_task(self._dispatch_loop(), name="localrt-dispatch"),
                 asyncio.create_task(self._write_loop(), name="localrt-write")}
        try:
            await self.emit(server_event("session.created", session=self.config.to_json()))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and (exc := task.exception()) is not None:
                    log.error("session %s failed", self.id, exc_info=exc)
        finally:
            for run in list(self._runs):
                await run.abort()
            self.prefetch.clear()
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            self._worker.submit(self._release_models)
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
                await self._inbox.put(_BINARY)
            else:
                return

    async def _write_loop(self) -> None:
        while True:
            event = await self._outbox.get()
            try:
                await self.ws.send_str(json.dumps(event))
            except ConnectionError:  # the caller went away; the reader ends the session
                return

    async def _dispatch_loop(self) -> None:
        handlers = self._handlers
        while True:
            raw = await self._inbox.get()
            event_id: str | None = None
            try:
                if raw is _BINARY:
                    raise ClientError("invalid_type", "Binary frames are not supported: send "
                                      "client events as JSON text.")
                event = parse_client_event(raw)
                event_id = client_event_id(event)
                kind = event_type(event)
                handler = handlers.get(kind)
                if handler is None:
                    raise ClientError("invalid_value", f"Invalid value: '{kind}'. Supported "
                                      f"values are: {', '.join(sorted(handlers))}.", "type")
                if (not self.configured and kind != "session.update"
                        and self.settings.require_session_update):
                    raise ClientError("session_not_configured",
                                      f"Send session.update (with session.type 'realtime') "
                                      f"before '{kind}'.")
                await handler(self, event)
            except ClientError as exc:
                await self.emit(exc.event(event_id))
            except Exception:  # a bug here must not silently end the caller's session
                log.exception("session %s: handling an event failed", self.id)
                await self.emit(error_event("server_error", "The local engine failed to "
                                            "handle this event; see its log.",
                                            client_event_id=event_id, type_="server_error"))

    # -- input turns ---------------------------------------------------------------------------

    async def on_listen_events(self, events: list[ListenEvent]) -> None:
        td = self.config.turn_detection
        for ev in events:
            if isinstance(ev, Pause):
                self._prepare_reply(ev.text)
                continue
            if isinstance(ev, SpeechStarted):
                self.speech_item_id = new_id("item")
                await self.emit(server_event("input_audio_buffer.speech_started",
                                             audio_start_ms=ev.audio_start_ms,
                                             item_id=self.speech_item_id))
                if self.active is not None and td is not None and td.interrupt_response:
                    run = self.active
                    run.cancel("turn_detected")
                    await run.wait()
                continue
            item_id = self.speech_item_id or new_id("item")
            self.speech_item_id = None
            await self.emit(server_event("input_audio_buffer.speech_stopped",
                                         audio_end_ms=ev.audio_end_ms, item_id=item_id))
            auto = td is not None and td.create_response
            await self.commit_utterance(item_id, ev.audio_end_ms - ev.audio_start_ms,
                                        ev.utterance, auto_response=auto)

    async def commit_utterance(self, item_id: str, duration_ms: int, utt: Utterance, *,
                               auto_response: bool) -> None:
        item = Item(item_id, "message", role="user",
                    content=[{"type": "input_audio", "transcript": None}])
        prev = self.conversation.add(item)
        await self.emit(server_event("input_audio_buffer.committed", item_id=item_id,
                                     previous_item_id=prev))
        await self.emit(server_event("conversation.item.added", previous_item_id=prev,
                                     item=item.to_json()))
        transcript = await self.in_worker(self.engine.asr.finalize, utt)
        item.heard = transcript.text
        log.debug("heard %r (%s)", transcript.text, transcript.source)
        if self.config.transcription is not None:
            item.content[0]["transcript"] = transcript.text
            await self.emit(server_event(
                "conversation.item.input_audio_transcription.delta", item_id=item_id,
                content_index=0, delta=transcript.text))
            await self.emit(server_event(
                "conversation.item.input_audio_transcription.completed", item_id=item_id,
                content_index=0, transcript=transcript.text,
                usage={"type": "duration", "seconds": round(duration_ms / 1000, 3)}))
        await self.emit(server_event("conversation.item.done", previous_item_id=prev,
                                     item=item.to_json()))
        if auto_response:
            if self.active is not None:
                # OpenAI: with interrupt_response off, "auto-create may fail while a response
                # is active". Say so, as the real server does for a client response.create.
                await self.emit(error_event(
                    "conversation_already_has_active_response",
                    f"Conversation already has an active response in progress: "
                    f"{self.active.id}. No response was created for item {item_id}."))
                return
            await self.start_response(response_params(None, self.config, self.conversation))

    def _prepare_reply(self, heard: str) -> None:
        """Synthesise the first sentence of the reply the caller will most likely get."""
        td = self.config.turn_detection
        if not heard or td is None or not td.create_response or self.active is not None:
            return
        params = response_params(None, self.config, self.conversation)
        if "audio" not in params.output_modalities:
            return
        guess = self.build_turn(params)
        turn = Turn("user", text=heard, previous_reply=guess.previous_reply)
        reply = copy.deepcopy(self.agent).reply(turn, params.tools, params.tool_choice)
        if reply.text:
            first = split_sentences(reply.text)[0]
            self.prefetch.start(first, wire_rate(params.output_format), params.speed)

    # -- responses -----------------------------------------------------------------------------

    async def start_response(self, params: ResponseParams) -> ResponseRun:
        run = ResponseRun(params, self.conversation, self.engine.voice, self.settings,
                          self.emit, self.prefetch)
        self.active = run
        self._runs.add(run)
        turn = self.build_turn(params)
        tools, choice = params.tools, params.tool_choice
        await run.begin(lambda: self.agent.reply(turn, tools, choice), self._response_ended)
        return run

    def _response_ended(self, run: ResponseRun) -> None:
        self._runs.discard(run)
        if self.active is run:
            self.active = None

    def build_turn(self, params: ResponseParams) -> Turn:
        """The newest input: everything after the last thing the assistant produced."""
        items = params.input if params.input is not None else self.conversation.items
        fresh: list[Item] = []
        for item in reversed(items):
            if item.type == "function_call" or (item.type == "message"
                                                and item.role == "assistant"):
                break
            fresh.append(item)
        fresh.reverse()
        previous = next((i.text() for i in reversed(items)
                         if i.type == "message" and i.role == "assistant"), "")
        outputs = tuple((self.conversation.function_name(i.call_id or "") or "tool",
                         i.output or "") for i in fresh if i.type == "function_call_output")
        if outputs:
            return Turn("tool_output", outputs=outputs, instructions=params.instructions,
                        previous_reply=previous)
        users = [i for i in fresh if i.type == "message" and i.role == "user"]
        if users:
            return Turn("user", text=users[-1].text(), instructions=params.instructions,
                        previous_reply=previous)
        return Turn("none", instructions=params.instructions, previous_reply=previous)
