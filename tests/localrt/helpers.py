"""Test helpers: a recording wrapper around the official SDK client, fixture audio, and the
ordering/id checks every conversation must pass."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import soxr
from websockets.exceptions import ConnectionClosedOK

from gateway.audio.g711 import ulaw_encode
from tests.fixtures.make_speech import load
from tests.oracle import validate_server_event

Event = dict[str, Any]

TOOLS = [
    {"type": "function", "name": "lookup_customer", "description": "Find a customer.",
     "parameters": {"type": "object", "properties": {
         "phone": {"type": "string"}, "account_id": {"type": "string"}}}},
    {"type": "function", "name": "schedule_appointment", "description": "Book a visit.",
     "parameters": {"type": "object", "properties": {
         "date": {"type": "string"}, "time": {"type": "string"},
         "name": {"type": "string"}, "account_id": {"type": "string"}}}},
]


def speech(name: str, fmt: str = "audio/pcm", silence_ms: int = 900) -> bytes:
    """A fixture phrase as wire audio, followed by silence so server VAD ends the turn."""
    samples, rate = load(name)
    out_rate = 24_000 if fmt == "audio/pcm" else 8_000
    pcm = np.asarray(soxr.resample(samples, rate, out_rate), dtype=np.int16)
    pcm = np.concatenate((pcm, np.zeros(out_rate * silence_ms // 1000, dtype=np.int16)))
    return pcm.astype("<i2").tobytes() if fmt == "audio/pcm" else ulaw_encode(pcm)


def silence(ms: int, fmt: str = "audio/pcm") -> bytes:
    return bytes(48 * ms) if fmt == "audio/pcm" else b"\xff" * (8 * ms)


def session_body(**overrides: Any) -> Event:
    fmt = overrides.pop("format", {"type": "audio/pcm", "rate": 24000})
    turn = overrides.pop("turn_detection", {
        "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
        "silence_duration_ms": 500, "create_response": True, "interrupt_response": True})
    body: Event = {
        "type": "realtime", "instructions": "Be brief.", "output_modalities": ["audio"],
        "audio": {"input": {"format": fmt, "transcription": {"model": "whisper-1"},
                            "turn_detection": turn},
                  "output": {"format": fmt, "voice": "marin"}},
        "tools": TOOLS, "tool_choice": "auto",
    }
    body.update(overrides)
    return body


class Probe:
    """Records and validates every server event (tests/oracle.py) from a background reader;
    tests then await the next event of a type."""

    validate: Callable[[Event], None] = staticmethod(validate_server_event)
    #: Whether the server closing the socket cleanly ends the recording (not a failure).
    close_is_normal = False

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.events: list[Event] = []
        self._cursor = 0
        self._changed = asyncio.Event()
        self._failure: BaseException | None = None
        self._reader: asyncio.Task[None] | None = None
        self.closed = False  # the server closed the socket cleanly (close_is_normal)
        self._closing = False  # the test is done: the client closes the socket

    async def __aenter__(self) -> Probe:
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._reader is not None
        # Close while the reader still drains: with the reader gone, frames the server sent
        # meanwhile fill the client's queue, it stops reading the socket, never sees the
        # server's closing handshake and waits out its 10 s close timeout.
        self._closing = True
        with contextlib.suppress(Exception):
            await self.conn.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        if self._failure is not None and exc[0] is None:
            raise self._failure

    async def _read(self) -> None:
        try:
            while True:
                raw = await self.conn.recv_bytes()
                event = json.loads(raw)
                self.validate(event)
                self.events.append(event)
                self._changed.set()
        except asyncio.CancelledError:
            raise
        except ConnectionClosedOK as exc:
            if self.close_is_normal or self._closing:
                self.closed = True
            else:
                self._failure = exc
            self._changed.set()
        except BaseException as exc:  # noqa: BLE001 - surfaced to the waiting test
            self._failure = exc
            self._changed.set()

    async def send(self, event: Event) -> None:
        await self.conn.send_raw(json.dumps(event))

    async def append(self, audio: bytes, chunk_ms: int = 20, fmt: str = "audio/pcm",
                     realtime: float = 0.0) -> None:
        """Stream audio as appends of ``chunk_ms``; ``realtime`` > 0 paces at that factor."""
        step = (48 if fmt == "audio/pcm" else 8) * chunk_ms
        for at in range(0, len(audio), step):
            await self.conn.input_audio_buffer.append(
                audio=base64.b64encode(audio[at:at + step]).decode())
            if realtime:
                await asyncio.sleep(chunk_ms / 1000 / realtime)

    async def next(self, type_: str, pred: Callable[[Event], bool] | None = None,
                   within: float = 20.0) -> Event:
        """The next matching event after the cursor (the cursor moves past it)."""
        async with asyncio.timeout(within):
            while True:
                if self._failure is not None:
                    raise self._failure
                for i in range(self._cursor, len(self.events)):
                    ev = self.events[i]
                    if ev["type"] == type_ and (pred is None or pred(ev)):
                        self._cursor = i + 1
                        return ev
                self._changed.clear()
                await self._changed.wait()

    async def wait_closed(self, within: float = 5.0) -> None:
        """Until the server has closed the socket cleanly (``close_is_normal``)."""
        async with asyncio.timeout(within):
            while not self.closed:
                if self._failure is not None:
                    raise self._failure
                self._changed.clear()
                await self._changed.wait()

    def of(self, type_: str) -> list[Event]:
        return [e for e in self.events if e["type"] == type_]


@contextlib.asynccontextmanager
async def connect(url: str, model: str = "gpt-realtime") -> AsyncIterator[Probe]:
    """The official SDK's realtime client pointed at the engine."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="sk-local", websocket_base_url=url)
    try:
        async with client.realtime.connect(model=model) as conn, Probe(conn) as probe:
            yield probe
    finally:
        await client.close()


def transcript_of(probe: Probe, response_id: str) -> str:
    done = [e for e in probe.of("response.output_audio_transcript.done")
            if e["response_id"] == response_id]
    return " ".join(e["transcript"] for e in done)


def check_lifecycle(events: list[Event]) -> None:
    """Ordering and id consistency over a whole conversation (GA rules)."""
    ids = [e["event_id"] for e in events if "event_id" in e]
    assert len(ids) == len(set(ids)), "server event_ids repeat"
    seen_items: set[str] = set()
    per_response: dict[str, list[str]] = defaultdict(list)
    item_state: dict[str, str] = {}
    part_state: dict[str, str] = {}
    for e in events:
        t = e["type"]
        if t in ("response.created", "response.done"):
            per_response[e["response"]["id"]].append(t)
        elif "response_id" in e:
            rid = e["response_id"]
            assert per_response[rid][:1] == ["response.created"], f"{t} before response.created"
            assert "response.done" not in per_response[rid], f"{t} after response.done"
            per_response[rid].append(t)
        if t == "conversation.item.added":
            prev = e.get("previous_item_id")
            assert prev is None or prev in seen_items, f"previous_item_id {prev} unknown"
            seen_items.add(e["item"]["id"])
        if t == "conversation.item.done":
            assert e["item"]["id"] in seen_items, "conversation.item.done before added"
        if t == "response.output_item.added":
            item_state[e["item"]["id"]] = "open"
        if t == "response.output_item.done":
            assert item_state.get(e["item"]["id"]) == "open", "output_item.done without added"
            assert part_state.get(e["item"]["id"]) != "open", "item done with a part open"
            item_state[e["item"]["id"]] = "done"
        if t == "response.content_part.added":
            assert item_state.get(e["item_id"]) == "open"
            part_state[e["item_id"]] = "open"
        if t == "response.content_part.done":
            assert part_state.get(e["item_id"]) == "open"
            part_state[e["item_id"]] = "done"
        if t.endswith(".delta") and t.startswith("response.output_"):
            assert part_state.get(e["item_id"]) == "open", f"{t} outside its content part"
        if t.startswith("response.function_call_arguments"):
            assert item_state.get(e["item_id"]) == "open", f"{t} outside its item"
    for rid, seq in per_response.items():
        assert seq[0] == "response.created" and seq[-1] == "response.done", rid
        assert seq.count("response.created") == 1 and seq.count("response.done") == 1, rid
    for e in events:
        if e["type"] == "response.done":
            r = e["response"]
            assert r["usage"]["total_tokens"] == 0
            for item in r["output"]:
                assert item_state.get(item["id"]) == "done", "response.done before its items"
    started = {e["item_id"] for e in events if e["type"] == "input_audio_buffer.speech_started"}
    stopped = {e["item_id"] for e in events if e["type"] == "input_audio_buffer.speech_stopped"}
    committed = {e["item_id"] for e in events if e["type"] == "input_audio_buffer.committed"}
    assert stopped <= started, "speech_stopped for an item that never started"
    assert stopped <= committed, "a VAD turn was not committed under its speech item_id"
