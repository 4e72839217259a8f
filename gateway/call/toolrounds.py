"""Server-side tool rounds: run the model's function calls on the gateway, answer, resume.

Only the calls of server tools (the profile's, where no client declared its own tool of the
same name: :func:`gateway.call.policy.server_tool_owned`) run here; every other function call
is the client's, reaches it as with OpenAI, and its output is the client's to send.

The round follows the protocol notes (§4): names come from ``response.output_item.*``;
nothing runs until the calling response is ``completed`` (never after ``cancelled`` or
``incomplete``); all outputs go up, then one ``response.create``, retried after the next
``response.done`` when the upstream says a response is already active. A tool still running
after its filler threshold makes the agent say a short filler so the caller hears no dead air.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from gateway.obs.metrics import Metrics
from gateway.tools.registry import ToolRegistry
from gateway.upstream.client import gateway_event_id

from . import policy
from .session import CallSession

log = logging.getLogger("gateway.tools")

Event = dict[str, Any]
FILLER_TEXT = "One moment while I look that up."


@dataclass
class PendingCall:
    call_id: str
    name: str
    arguments: str = ""
    item_id: str = ""


class ToolRounds:
    def __init__(self, session: CallSession, registry: ToolRegistry, metrics: Metrics) -> None:
        self.session = session
        self.registry = registry
        self.metrics = metrics
        self._calls: dict[str, dict[str, PendingCall]] = {}  # response_id -> call_id -> call
        self._create_wanted = False
        self._create_event: str | None = None
        self._filler_event: str | None = None
        self._known_call_ids: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.rounds_completed = 0
        session.hooks.upstream_event.append(self.on_event)
        session.hooks.function_output_guard.append(self.guard)
        session.hooks.on_close.append(self.close)

    # -- policy ---------------------------------------------------------------------------

    def guard(self, item: Event) -> str | None:
        call_id = str(item.get("call_id", ""))
        if call_id in self._known_call_ids:
            return ("This function call is a server-side tool; the gateway answers it. "
                    "A client may not send its output.")
        return None

    # -- events -------------------------------------------------------------------------

    def on_event(self, ev: Event) -> None:
        t = ev.get("type")
        if t in ("response.output_item.added", "response.output_item.done"):
            self._note_item(str(ev.get("response_id", "")), ev.get("item") or {})
        elif t == "response.function_call_arguments.done":
            call = self._calls.get(str(ev.get("response_id", "")), {}).get(
                str(ev.get("call_id", "")))
            if call is not None:
                call.arguments = str(ev.get("arguments", ""))
        elif t == "response.done":
            self._on_response_done(ev.get("response") or {})
        elif t == "error":
            err = ev.get("error") or {}
            if err.get("code") == "conversation_already_has_active_response" and \
                    err.get("event_id") == self._create_event:
                # Someone else's response got in first (server VAD, a filler): try again
                # after it is done.
                self._create_wanted = True
                self._create_event = None

    def _note_item(self, response_id: str, item: Event) -> None:
        if item.get("type") != "function_call":
            return
        name = str(item.get("name") or "")
        call_id = str(item.get("call_id") or "")
        if not call_id or not policy.server_tool_owned(self.session.session,
                                                        self.session.profile,
                                                        self.session.tool_lookup, name):
            return  # a client's tool: its call goes to the client, who answers it
        self._known_call_ids.add(call_id)
        calls = self._calls.setdefault(response_id, {})
        call = calls.setdefault(call_id, PendingCall(call_id, name))
        call.item_id = str(item.get("id") or call.item_id)
        if item.get("arguments"):
            call.arguments = str(item["arguments"])

    def _on_response_done(self, resp: Event) -> None:
        rid = str(resp.get("id", ""))
        for out in resp.get("output") or []:
            if isinstance(out, dict):
                self._note_item(rid, out)
        calls = list(self._calls.pop(rid, {}).values())
        status = resp.get("status")
        if calls and status != "completed":
            for c in calls:
                self.metrics.tool_calls.labels(c.name, "skipped").inc()
            self.session.note("tool_skipped", text=f"response {status}; not run",
                              tools=[c.name for c in calls])
        elif calls:
            self._spawn(self._round(calls))
        if self._create_wanted and self.session.active_response is None:
            self._send_create()

    # -- the round ----------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name="tool-round")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _round(self, calls: list[PendingCall]) -> None:
        loop = asyncio.get_running_loop()
        filler_after = min((t.filler_after_s for c in calls
                            if (t := self.registry.get(c.name)) is not None), default=1.5)
        filler = loop.call_later(filler_after, self._say_filler)
        try:
            outputs = await asyncio.gather(*(self._run_one(c) for c in calls))
        finally:
            filler.cancel()
        up = self.session.upstream
        if up is None:
            return
        for call, output in zip(calls, outputs, strict=True):
            up.send({"type": "conversation.item.create",
                     "event_id": gateway_event_id(),
                     "item": {"type": "function_call_output", "call_id": call.call_id,
                              "output": output}})
        self.rounds_completed += 1
        if self.session.active_response is None:
            self._send_create()
        else:
            self._create_wanted = True

    async def _run_one(self, call: PendingCall) -> str:
        started = time.perf_counter()
        self.session.note("tool_call", text=call.arguments, tool=call.name,
                          call_id=call.call_id, item_id=call.item_id)
        try:
            result, outcome = await self.registry.call(call.name, call.arguments)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.tool_duration.labels(call.name).observe(elapsed)
        self.metrics.tool_calls.labels(call.name, outcome).inc()
        text = result if isinstance(result, str) else json.dumps(result)
        self.session.note("tool_result", text=text, tool=call.name, call_id=call.call_id,
                          outcome=outcome, duration_ms=round(elapsed * 1000))
        return text

    def _say_filler(self) -> None:
        up = self.session.upstream
        if up is None or self.session.active_response is not None:
            return
        self._filler_event = gateway_event_id()
        self.session.note("filler", speaker="agent", text=FILLER_TEXT)
        up.send({"type": "response.create", "event_id": self._filler_event, "response": {
            "conversation": "none", "output_modalities": ["audio"], "tool_choice": "none",
            "instructions": f"Say exactly this and nothing else: {FILLER_TEXT}",
            "metadata": {"gateway": "filler"}}})

    def _send_create(self) -> None:
        up = self.session.upstream
        if up is None:
            return
        self._create_wanted = False
        self._create_event = gateway_event_id()
        up.send({"type": "response.create", "event_id": self._create_event})

    async def close(self, reason: str) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await t
