"""One response: the agent's reply spoken (or typed, or a function call) as GA events.

Lifecycle (GA order): response.created -> output_item.added -> conversation.item.added ->
content_part.added -> (transcript delta, audio deltas) per sentence -> output_audio.done ->
output_audio_transcript.done -> content_part.done -> output_item.done -> conversation.item.done
-> response.done. A cancelled response still closes every part it opened (item status
``incomplete``), so ``added`` always has its ``done``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .agent import Reply, ToolCall
from .audioio import encode_output, wire_rate
from .config import EngineConfig
from .conversation import Conversation, Item, Segment
from .protocol import Json, new_id, server_event
from .sessionconfig import WireFormat, format_json
from .tts import Voice, split_sentences

Emit = Callable[[Json], Awaitable[None]]

ZERO_USAGE: Json = {
    "total_tokens": 0, "input_tokens": 0, "output_tokens": 0,
    "input_token_details": {"text_tokens": 0, "audio_tokens": 0, "cached_tokens": 0},
    "output_token_details": {"text_tokens": 0, "audio_tokens": 0},
}


@dataclass(slots=True)
class ResponseParams:
    conversation: str = "auto"  # "auto" | "none" (out of band)
    instructions: str | None = None
    output_modalities: list[str] = field(default_factory=lambda: ["audio"])
    output_format: WireFormat = "audio/pcm"
    voice: str | Json = "marin"
    speed: float = 1.0
    tools: list[Json] = field(default_factory=list)
    tool_choice: str | Json = "auto"
    max_output_tokens: int | str = "inf"
    metadata: Json | None = None
    input: list[Item] | None = None  # response.create's own context, if given
    #: Said as an audio item of its own before a tool call, in the same response (a
    #: "preamble", as newer models do when their instructions ask for one).
    preamble: str | None = None


PREAMBLE = "One moment, let me check that."
_ASKS_FOR_PREAMBLE = re.compile(r"\bpreambles?\b", re.IGNORECASE)


def preamble_for(*instructions: str | None) -> str | None:
    """The preamble a response says before a tool call, when instructions ask for one."""
    if any(i and _ASKS_FOR_PREAMBLE.search(i) for i in instructions):
        return PREAMBLE
    return None


class Pacer:
    """Releases audio no faster than ``pace`` x real time after ``lead_ms`` of burst."""

    def __init__(self, pace: float, lead_ms: int) -> None:
        self._pace = pace
        self._lead_ms = lead_ms
        self._t0 = asyncio.get_running_loop().time()

    def delay(self, emitted_ms: float) -> float:
        """Seconds to wait before the audio after ``emitted_ms`` may leave (0: at once, but
        still a point where a barge-in can land)."""
        if self._pace <= 0:
            return 0.0
        elapsed_ms = (asyncio.get_running_loop().time() - self._t0) * 1000.0
        ahead = emitted_ms - (self._lead_ms + elapsed_ms * self._pace)
        return max(ahead, 0.0) / (1000.0 * self._pace)


class Prefetch:
    """Audio of a reply's first sentence, synthesised ahead: while the caller's silence window
    runs out, the session guesses the reply from the partial transcript. When the final
    transcript gives the same first sentence, the response starts with audio already made."""

    def __init__(self, voice: Voice, keep: int = 2) -> None:
        self._voice = voice
        self._keep = keep
        self._futures: dict[tuple[str, int, float], asyncio.Future[Any]] = {}

    def start(self, sentence: str, rate: int, speed: float) -> None:
        key = (sentence, rate, speed)
        if key in self._futures:
            return
        loop = asyncio.get_running_loop()
        self._futures[key] = loop.run_in_executor(None, self._voice.synthesize, *key)
        while len(self._futures) > self._keep:
            self._futures.pop(next(iter(self._futures))).cancel()

    def take(self, sentence: str, rate: int, speed: float) -> asyncio.Future[Any] | None:
        return self._futures.pop((sentence, rate, speed), None)

    def clear(self) -> None:
        for fut in self._futures.values():
            fut.cancel()
        self._futures.clear()


class _Cancelled(Exception):
    """Raised at a checkpoint once the response was cancelled."""


class ResponseRun:
    """Cancellation is cooperative: ``cancel()`` resolves a future that every wait of the
    generator also watches (pacing, synthesis), and checkpoints between events raise. So a
    cancel never lands in the middle of closing events, and every ``added`` gets its ``done``.
    """

    def __init__(self, params: ResponseParams, conversation: Conversation, voice: Voice,
                 config: EngineConfig, emit: Emit, prefetch: Prefetch | None = None) -> None:
        self.id = new_id("resp")
        self._prefetch = prefetch
        self.params = params
        self._conversation = conversation
        self._voice = voice
        self._config = config
        self._emit = emit
        self._cancelled: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self._output: list[Item] = []

    @property
    def in_conversation(self) -> bool:
        return self.params.conversation != "none"

    def response_json(self, status: str, details: Json | None = None) -> Json:
        p = self.params
        return {
            "id": self.id, "object": "realtime.response", "status": status,
            "status_details": details,
            "output": [item.to_json() for item in self._output],
            "conversation_id": self._conversation.id if self.in_conversation else None,
            "output_modalities": list(p.output_modalities),
            "max_output_tokens": p.max_output_tokens,
            "audio": {"output": {"format": format_json(p.output_format), "voice": p.voice}},
            "usage": ZERO_USAGE if status != "in_progress" else None,
            "metadata": p.metadata,
        }

    async def begin(self, reply: Callable[[], Reply],
                    on_done: Callable[[ResponseRun], None]) -> None:
        """Emit response.created, then generate in a task; ``on_done`` runs when it ends."""
        await self._emit(server_event("response.created",
                                      response=self.response_json("in_progress")))
        self._task = asyncio.create_task(self._run(reply), name=f"localrt-{self.id}")
        self._task.add_done_callback(lambda _: on_done(self))

    @property
    def audio_ms(self) -> float:
        """Audio produced by this response, all of its items."""
        return sum(item.audio_ms for item in self._output)

    @property
    def done(self) -> bool:
        return self._task is None or self._task.done()

    def cancel(self, reason: str) -> None:
        if not self._cancelled.done():
            self._cancelled.set_result(reason)

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.wait({self._task})

    async def abort(self) -> None:
        """Stop at once without emitting anything more (the session is closing)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task})

    def _checkpoint(self) -> None:
        if self._cancelled.done():
            raise _Cancelled

    async def _run(self, reply: Callable[[], Reply]) -> None:
        closing: list[Callable[[str], Awaitable[None]]] = []
        try:
            answer = reply()
            if answer.tool_call is not None:
                if self.params.preamble and "audio" in self.params.output_modalities:
                    await self._message(self.params.preamble, closing)  # output 0
                await self._function_call(answer.tool_call, closing)
            else:
                await self._message(answer.text, closing)
            status, details = "completed", None
        except _Cancelled:
            status = "cancelled"
            details = {"type": "cancelled", "reason": self._cancelled.result()}
            for close in closing:
                await close("incomplete")
        await self._emit(server_event("response.done",
                                      response=self.response_json(status, details)))

    # -- output items ----------------------------------------------------------------------

    async def _add_item(self, item: Item) -> int:
        index = len(self._output)
        self._output.append(item)
        await self._emit(server_event("response.output_item.added", response_id=self.id,
                                      output_index=index, item=item.to_json()))
        if self.in_conversation:
            prev = self._conversation.add(item)
            await self._emit(server_event("conversation.item.added", previous_item_id=prev,
                                          item=item.to_json()))
        return index

    async def _finish_item(self, item: Item, index: int, status: str) -> None:
        item.status = "completed" if status == "completed" else "incomplete"
        await self._emit(server_event("response.output_item.done", response_id=self.id,
                                      output_index=index, item=item.to_json()))
        if self.in_conversation and item in self._conversation.items:
            i = self._conversation.items.index(item)
            prev = self._conversation.items[i - 1].id if i > 0 else None
            await self._emit(server_event("conversation.item.done", previous_item_id=prev,
                                          item=item.to_json()))

    async def _function_call(self, call: ToolCall,
                             closing: list[Callable[[str], Awaitable[None]]]) -> None:
        self._checkpoint()  # from here on the call is emitted whole
        item = Item(new_id("item"), "function_call", status="in_progress",
                    call_id=new_id("call"), name=call.name, arguments="")
        index = await self._add_item(item)
        args = json.dumps(call.arguments)
        ids = {"response_id": self.id, "item_id": item.id, "output_index": index,
               "call_id": item.call_id}
        await self._emit(server_event("response.function_call_arguments.delta", delta=args,
                                      **ids))
        item.arguments = args
        await self._emit(server_event("response.function_call_arguments.done", arguments=args,
                                      name=call.name, **ids))
        await self._finish_item(item, index, "completed")

    async def _message(self, text: str,
                       closing: list[Callable[[str], Awaitable[None]]]) -> None:
        self._checkpoint()
        audio = "audio" in self.params.output_modalities
        item = Item(new_id("item"), "message", role="assistant", status="in_progress")
        index = await self._add_item(item)
        part = _OpenPart(self, item, index, audio)
        await part.open()
        closing.append(part.close)
        sentences = split_sentences(text) or [""]
        if audio:
            await self._speak(part, sentences)
        else:
            for s in sentences:
                await part.add_text(s)
        closing.remove(part.close)
        await part.close("completed")

    async def _until(self, fut: asyncio.Future[Any] | None, delay: float | None) -> None:
        """Wait for ``fut`` (or ``delay`` seconds), returning early on cancel; checkpoint."""
        waits: set[asyncio.Future[Any]] = {self._cancelled}
        if fut is not None:
            waits.add(fut)
        await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        self._checkpoint()

    async def _speak(self, part: _OpenPart, sentences: list[str]) -> None:
        loop = asyncio.get_running_loop()
        fmt, speed = self.params.output_format, self.params.speed
        rate = wire_rate(fmt)
        chunk = rate * self._config.output_chunk_ms // 1000
        pacer = Pacer(self._config.output_pace, self._config.output_lead_ms)

        def synth(sentence: str) -> Any:
            return self._voice.synthesize(sentence, rate, speed)

        ready = self._prefetch.take(sentences[0], rate, speed) if self._prefetch else None
        pending = ready or loop.run_in_executor(None, synth, sentences[0])
        try:
            for i, sentence in enumerate(sentences):
                await self._until(pending, None)
                samples = pending.result()
                if i + 1 < len(sentences):
                    pending = loop.run_in_executor(None, synth, sentences[i + 1])
                await part.add_text(sentence)
                item = part.item
                start = item.audio_ms
                item.segments.append(Segment(sentence, start, start + len(samples) * 1000 / rate))
                for at in range(0, len(samples), chunk):
                    await self._until(None, pacer.delay(item.audio_ms))
                    piece = samples[at:at + chunk]
                    await self._emit(server_event(
                        "response.output_audio.delta", **part.ids,
                        delta=base64.b64encode(encode_output(piece, fmt)).decode("ascii")))
                    item.audio_ms += len(piece) * 1000 / rate
        finally:
            pending.cancel()


class _OpenPart:
    """The content part of a message being generated; closed once, with what was produced."""

    def __init__(self, run: ResponseRun, item: Item, index: int, audio: bool) -> None:
        self.run = run
        self.item = item
        self.index = index
        self.audio = audio
        self.text = ""
        self.ids = {"response_id": run.id, "item_id": item.id, "output_index": index,
                    "content_index": 0}

    async def open(self) -> None:
        part = {"type": "audio", "transcript": ""} if self.audio else {"type": "text", "text": ""}
        self.item.content = [{"type": "output_audio", "transcript": ""} if self.audio
                             else {"type": "output_text", "text": ""}]
        await self.run._emit(server_event("response.content_part.added", **self.ids, part=part))

    async def add_text(self, sentence: str) -> None:
        if not sentence:
            return
        delta = sentence if not self.text else " " + sentence
        self.text += delta
        self.item.content[0]["transcript" if self.audio else "text"] = self.text
        kind = "response.output_audio_transcript.delta" if self.audio else \
            "response.output_text.delta"
        await self.run._emit(server_event(kind, **self.ids, delta=delta))

    async def close(self, status: str) -> None:
        emit, ids = self.run._emit, self.ids
        if self.audio:
            await emit(server_event("response.output_audio.done", **ids))
            await emit(server_event("response.output_audio_transcript.done", **ids,
                                    transcript=self.text))
            part = {"type": "audio", "transcript": self.text}
        else:
            await emit(server_event("response.output_text.done", **ids, text=self.text))
            part = {"type": "text", "text": self.text}
        await emit(server_event("response.content_part.done", **ids, part=part))
        await self.run._finish_item(self.item, self.index, status)
