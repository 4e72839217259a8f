"""The agent's voice in a Live session: text -> ``session.output_transcript.delta`` +
``session.output_audio.delta``, one utterance at a time, stoppable mid-sentence.

Live has no responses to open and close: speech is a stream on the session timeline. Each
sentence's transcript delta goes out just before its audio, carrying the timeline range that
audio covers. Reuses the Realtime engine's voice (``tts.Voice``), sentence split, output
encoding and pacing (``response.Pacer``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable

from .audioio import encode_output, wire_rate
from .config import EngineConfig
from .protocol import Json
from .response import Pacer
from .sessionconfig import WireFormat
from .tts import Voice, split_sentences

log = logging.getLogger(__name__)

Emit = Callable[[Json], Awaitable[None]]
Event = Callable[..., Json]

#: Utterances waiting behind the one being spoken (commentary arriving while the agent talks).
QUEUED_UTTERANCES = 8


class LiveSpeaker:
    def __init__(self, voice: Voice, settings: EngineConfig, emit: Emit, event: Event,
                 fmt: WireFormat, clock: Callable[[], int]) -> None:
        self._voice = voice
        self._settings = settings
        self._emit = emit
        self._event = event
        self._fmt = fmt
        self._clock = clock
        self._queue: asyncio.Queue[str] = asyncio.Queue(QUEUED_UTTERANCES)
        self._current: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._out_end = 0  # timeline ms where the audio sent so far ends
        self.spoken_ms = 0.0  # all output audio sent (usage)
        self.heard: list[str] = []  # sentences whose audio went out whole, in order

    @property
    def speaking(self) -> bool:
        return (self._current is not None and not self._current.done()) or \
            not self._queue.empty()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="live-speaker")

    def say(self, text: str) -> None:
        if not text.strip():
            return
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            log.warning("live speaker: %d utterances queued; dropped %r",
                        QUEUED_UTTERANCES, text[:40])

    async def stop(self) -> bool:
        """Barge-in: drop what is queued and cut the utterance in progress. True if anything
        was being said."""
        was = self.speaking
        while not self._queue.empty():
            self._queue.get_nowait()
        current = self._current
        if current is not None and not current.done():
            current.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await current
        return was

    async def close(self) -> None:
        await self.stop()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task

    async def _loop(self) -> None:
        me = asyncio.current_task()
        while True:
            text = await self._queue.get()
            self._current = asyncio.create_task(self._speak(text), name="live-utterance")
            try:
                await self._current
            except asyncio.CancelledError:
                if me is not None and me.cancelling():
                    raise  # the session is closing; a stopped utterance is not an error

    async def _speak(self, text: str) -> None:
        loop = asyncio.get_running_loop()
        rate = wire_rate(self._fmt)
        chunk = rate * self._settings.output_chunk_ms // 1000
        pacer = Pacer(self._settings.output_pace, self._settings.output_lead_ms)
        sentences = split_sentences(text)
        sent_ms = 0.0
        pending = loop.run_in_executor(None, self._voice.synthesize, sentences[0], rate)
        try:
            for i, sentence in enumerate(sentences):
                samples = await pending
                if i + 1 < len(sentences):
                    pending = loop.run_in_executor(None, self._voice.synthesize,
                                                   sentences[i + 1], rate)
                start = max(self._clock(), self._out_end)
                duration = round(len(samples) * 1000 / rate)
                delta = (" " if self._out_end else "") + sentence
                self._out_end = start + duration
                await self._emit(self._event("session.output_transcript.delta", delta=delta,
                                             start_ms=start, end_ms=start + duration))
                for at in range(0, len(samples), chunk):
                    if (wait := pacer.delay(sent_ms)) > 0:
                        await asyncio.sleep(wait)
                    piece = samples[at:at + chunk]
                    audio = base64.b64encode(encode_output(piece, self._fmt)).decode("ascii")
                    await self._emit({"type": "session.output_audio.delta", "delta": audio})
                    sent_ms += len(piece) * 1000 / rate
                    self.spoken_ms += len(piece) * 1000 / rate
                self.heard.append(sentence)
        finally:
            pending.cancel()
