"""OpenAI's Python SDK pointed at the gateway, as an app would use it, with every raw event it
receives kept for the oracle and for waiting on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection

from tests.gateway_fixtures import API_KEY, Gateway

Json = dict[str, Any]

#: The app's own function tool: the client runs it (the default profile also has a server
#: tool of this name; a client's declaration must win in a transparent profile).
SCHEDULE_TOOL: Any = {
    "type": "function", "name": "schedule_appointment",
    "description": "Book an appointment in the app's own calendar.",
    "parameters": {"type": "object", "properties": {
        "date": {"type": "string"}, "time": {"type": "string"}},
        "required": ["date", "time"]},
}
APP_INSTRUCTIONS = "You are the front desk of the Conformance Clinic. Be brief."
#: What the app's calendar answers; the agent must speak this, not the gateway's own tool.
CLIENT_CONFIRMATION = "CLIENT-4711"


def sdk(gw: Gateway) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{gw.base}/v1", api_key=API_KEY)


class Events:
    """Reads a connection's raw events in a task; waits for the next one matching."""

    def __init__(self, conn: AsyncRealtimeConnection) -> None:
        self.conn = conn
        self.all: list[Json] = []
        self._taken: dict[str, int] = {}
        self._arrived = asyncio.Event()
        self.error: BaseException | None = None
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            while True:
                self.all.append(json.loads(await self.conn.recv_bytes()))
                self._arrived.set()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the connection closed: waiting ends with it
            self.error = e
            self._arrived.set()

    def of(self, etype: str) -> list[Json]:
        return [e for e in self.all if e.get("type") == etype]

    async def next(self, etype: str, timeout_s: float = 20.0,
                   where: Callable[[Json], bool] = lambda e: True) -> Json:
        """The next event of this type (and predicate) not returned before."""
        key = etype
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    n = self._taken.get(key, 0)
                    matches = [e for e in self.of(etype)]
                    for i in range(n, len(matches)):
                        if where(matches[i]):
                            self._taken[key] = i + 1
                            return matches[i]
                    if self.error is not None:
                        raise AssertionError(f"connection ended ({self.error!r}) before "
                                             f"{etype}; got {[e['type'] for e in self.all]}")
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(f"no {etype} (as wanted) within {timeout_s} s; {self.story()}"
                                 ) from None

    def story(self) -> str:
        """What happened so far, for a failure message: errors, tool calls, what was said."""
        keep = ("error", "response.function_call_arguments.done", "session.created",
                "conversation.item.input_audio_transcription.completed",
                "response.output_audio_transcript.done", "response.audio_transcript.done")
        brief = []
        for e in self.all:
            t = str(e.get("type"))
            if t in keep:
                detail = e.get("error") or e.get("transcript") or e.get("name") or ""
                brief.append(f"{t}: {detail}")
            elif t.startswith("gateway."):
                brief.append(t)
        return "events: " + " | ".join(brief[-20:])

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def stream_audio(conn: AsyncRealtimeConnection, data: bytes, piece: int,
                       pace_s: float) -> None:
    """Appends of ``piece`` bytes every ``pace_s`` (faster than real time keeps tests short;
    the engine keeps up)."""
    for i in range(0, len(data), piece):
        await conn.input_audio_buffer.append(audio=_b64(data[i:i + piece]))
        await asyncio.sleep(pace_s)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


async def answer_tool_call(conn: AsyncRealtimeConnection, call: Json, output: Json) -> None:
    """What an app does with a function call: its output, then a new response."""
    await conn.conversation.item.create(item={
        "type": "function_call_output", "call_id": call["call_id"],
        "output": json.dumps(output)})
    await conn.response.create()
