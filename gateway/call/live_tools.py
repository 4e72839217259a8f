"""Server tools on a GPT-Live call: the gateway answers the function calls it owns.

Live hands tool work off by *delegation* (docs/live.md §6). Only ``responses`` delegation
names a function and its arguments (a Responses backend's function call, nested in
``response.event``), so that is where the profile's server tools run: the profile's tools
are added to ``delegation.responses.tools`` (:func:`live_policy.merge_tools`); when the
backend's response completes with calls to them, the gateway runs them and answers with
``response.item.create`` (``function_call_output``) and one ``response.create``, as an app
would. Calls to the app's own tools pass through untouched; a client answering a call the
gateway owns is refused. Under ``client`` delegation there is no name and no arguments:
delegations pass to the app (recorded in the transcript), and the server tools do not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from gateway.obs.metrics import Metrics
from gateway.tools.registry import ToolRegistry
from gateway.upstream.client import gateway_event_id

from .session import CallSession

log = logging.getLogger("gateway.tools")

Event = dict[str, Any]


class LiveTools:
    def __init__(self, call: CallSession, registry: ToolRegistry, metrics: Metrics,
                 server_tools: tuple[str, ...]) -> None:
        self.call = call
        self.registry = registry
        self.metrics = metrics
        self.server_tools = frozenset(server_tools)
        self._pending: dict[str, list[tuple[str, str, str]]] = {}  # response -> calls
        self._owned: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.rounds_completed = 0
        call.hooks.upstream_event.append(self.on_event)
        call.hooks.function_output_guard.append(self.guard)
        call.hooks.on_close.append(self.close)

    def guard(self, item: Event) -> str | None:
        if str(item.get("call_id", "")) in self._owned:
            return ("This function call is a server-side tool; the gateway answers it. A "
                    "client may not send its output.")
        return None

    def on_event(self, event: Event) -> None:
        if event.get("type") != "response.event":
            return
        nested = event.get("event")
        if not isinstance(nested, dict):
            return
        kind = nested.get("type")
        response = nested.get("response")
        status = response.get("status") if isinstance(response, dict) else None
        if kind == "response.output_item.done":
            item = nested.get("item") or {}
            name, call_id = item.get("name"), item.get("call_id")
            if item.get("type") == "function_call" and name in self.server_tools and \
                    isinstance(call_id, str):
                self._owned.add(call_id)
                rid = str(event.get("delegation_id") or "")
                self._pending.setdefault(rid, []).append(
                    (str(name), str(item.get("arguments") or "{}"), call_id))
        elif kind in ("response.completed", "response.failed", "response.incomplete"):
            calls = self._pending.pop(str(event.get("delegation_id") or ""), [])
            if calls and kind == "response.completed":
                self._spawn(self._round(calls))
            elif calls:
                self.call.note("tool_skipped", text=f"backend {status}",
                               tools=[c[0] for c in calls])

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name="live-tool-round")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _round(self, calls: list[tuple[str, str, str]]) -> None:
        outputs = await asyncio.gather(*(self._run(*c) for c in calls))
        up = self.call.upstream
        if up is None:
            return
        for (_name, _args, call_id), output in zip(calls, outputs, strict=True):
            up.send({"type": "response.item.create", "event_id": gateway_event_id(),
                     "item": {"type": "function_call_output", "call_id": call_id,
                              "output": output}})
        up.send({"type": "response.create", "event_id": gateway_event_id()})
        self.rounds_completed += 1

    async def _run(self, name: str, arguments: str, call_id: str) -> str:
        self.call.note("tool_call", text=arguments, tool=name, call_id=call_id)
        started = time.perf_counter()
        result, outcome = await self.registry.call(name, arguments)
        elapsed = time.perf_counter() - started
        self.metrics.tool_duration.labels(name).observe(elapsed)
        self.metrics.tool_calls.labels(name, outcome).inc()
        text = result if isinstance(result, str) else json.dumps(result)
        self.call.note("tool_result", text=text, tool=name, call_id=call_id, outcome=outcome,
                       duration_ms=round(elapsed * 1000))
        return text

    async def close(self, reason: str) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await t
