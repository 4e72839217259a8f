"""``CallRecorder``: what a call session holds to record its call.

Every method is called on the event loop and returns in microseconds: it only appends to a
bounded mailbox that the call's writer thread drains (``writer.py``). When the mailbox is full
the chunk is dropped and counted (metadata ``recording.dropped``) and the call goes on; the
dropped stretch becomes silence at its place on the timeline, so alignment survives.

Offsets are milliseconds from the call's start (``started_at``, unix wall time): caller audio
where it was received, agent audio where it was *played* to the caller (so after a barge-in
only what was heard). Report on a monotonic clock: ``(loop.time() - t0) * 1000``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from enum import StrEnum
from pathlib import Path
from typing import Any

from ..audio.formats import PCM_BYTES_PER_MS
from .layout import call_dir, valid_call_id
from .mailbox import Audio, Close, Line, Mailbox, Sync
from .writer import RecordingWriter

log = logging.getLogger("gateway.recording")

#: ~11 s of both channels in flight: the writer drains every 0.5 s, so only a stalled disk
#: fills it. Per call, so 200 calls cost at most ~200 MiB even then.
QUEUE_BYTES = 1 << 20
QUEUE_ITEMS = 2048
#: Transcript lines may use this many items beyond a full audio budget.
LINE_SLACK = 1024
#: Size a transcript line is charged for in the byte budget (they are small and rare).
LINE_BYTES = 256
#: A call's start further than this from "now" when recording starts is probably a bug.
STARTED_AT_SANE_S = 300.0


class TranscriptKind(StrEnum):
    UTTERANCE = "utterance"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    INTERRUPTION = "interruption"
    IDLE_PROMPT = "idle_prompt"
    RECONNECTED = "reconnected"
    DEAD_MIC = "dead_mic"
    NOTE = "note"


_KINDS = frozenset(TranscriptKind)
_SPEAKERS = frozenset({"caller", "agent"})


class CallRecorder:
    """One call's recording: ``start``, feed it, then ``close`` and ``await wait_closed()``."""

    def __init__(self, *, directory: Path, call_id: str, started_at: float,
                 metadata: dict[str, Any], opus_copy: bool,
                 on_bytes: Callable[[int], None] | None, on_error: Callable[[], None] | None,
                 queue_bytes: int, queue_items: int, tick_s: float) -> None:
        self.call_id = call_id
        self.directory = directory
        self.started_at = started_at
        # Offset 0 on the monotonic clock: immune to wall-clock steps during the call.
        self._mono0 = time.monotonic() - (time.time() - started_at)
        self._mb = Mailbox(max_items=queue_items, max_bytes=queue_bytes)
        self._closed: Future[None] = Future()
        self._closing = False
        self._dropped_bytes = [0, 0]
        self._dropped_lines = 0
        self._late_calls = 0
        self._writer = RecordingWriter(
            directory=directory, call_id=call_id, started_at=started_at, mono0=self._mono0,
            start_meta=dict(metadata), opus_copy=opus_copy, mailbox=self._mb,
            done=self._closed, on_bytes=on_bytes, on_error=on_error, tick_s=tick_s)

    @classmethod
    def start(cls, root: Path, call_id: str, *, started_at: float, metadata: dict[str, Any],
              opus_copy: bool = False, on_bytes: Callable[[int], None] | None = None,
              on_error: Callable[[], None] | None = None, queue_bytes: int = QUEUE_BYTES,
              queue_items: int = QUEUE_ITEMS, tick_s: float = 0.5) -> CallRecorder:
        """Start recording into ``<root>/YYYY/MM/DD/<call_id>/`` (UTC date of ``started_at``).

        ``metadata`` should carry ``transport``, ``caller``, ``agent`` (profile) and ``model``
        (the alias the client used); any other JSON-able keys are kept. ``on_bytes`` and
        ``on_error`` run on the writer thread (a Prometheus counter's ``inc`` is fine there).
        Raises ValueError for a call id that is not ``[A-Za-z0-9_-]{1,100}``.
        """
        if not valid_call_id(call_id):
            raise ValueError(f"invalid call id {call_id!r}")
        if abs(time.time() - started_at) > STARTED_AT_SANE_S:
            # Offsets count from started_at, and the writer fills silence up to the wall
            # clock: a start hours off would write hours of silence.
            log.warning("recording %s: started_at is %.0f s from now", call_id,
                        time.time() - started_at)
        rec = cls(directory=call_dir(root, call_id, started_at), call_id=call_id,
                  started_at=started_at, metadata=metadata, opus_copy=opus_copy,
                  on_bytes=on_bytes, on_error=on_error, queue_bytes=queue_bytes,
                  queue_items=queue_items, tick_s=tick_s)
        rec._writer.start()
        return rec

    # ---- the hot path (event loop) -------------------------------------------------------

    def caller_audio(self, pcm: bytes, offset_ms: float) -> None:
        """PCM16 LE mono 24 kHz as received from the caller, starting at ``offset_ms``."""
        if self._closing:
            self._late_calls += 1
        elif not self._mb.offer(Audio(0, pcm, offset_ms), len(pcm)):
            self._dropped_bytes[0] += len(pcm)

    def agent_audio(self, pcm: bytes, offset_ms: float) -> None:
        """PCM16 LE mono 24 kHz as actually played to the caller, starting at ``offset_ms``."""
        if self._closing:
            self._late_calls += 1
        elif not self._mb.offer(Audio(1, pcm, offset_ms), len(pcm)):
            self._dropped_bytes[1] += len(pcm)

    def transcript(self, kind: str, *, speaker: str | None = None, text: str | None = None,
                   item_id: str | None = None, offset_ms: float, **extra: Any) -> None:
        """One ``transcript.jsonl`` line; ``extra`` keys are added (JSON-able values)."""
        if kind not in _KINDS:
            log.warning("recording %s: unknown transcript kind %r", self.call_id, kind)
        if speaker is not None and speaker not in _SPEAKERS:
            log.warning("recording %s: unknown speaker %r", self.call_id, speaker)
        if self._closing:
            self._late_calls += 1
            return
        line = Line(str(kind), speaker, text, item_id, offset_ms, extra)
        if not self._mb.offer(line, LINE_BYTES, item_slack=LINE_SLACK):
            self._dropped_lines += 1

    # ---- lifecycle -----------------------------------------------------------------------

    def close(self, end_reason: str, extra: dict[str, Any]) -> None:
        """Mark the call's end now; the writer pads, finalizes and writes ``metadata.json``.

        Idempotent: only the first call counts. Anything recorded afterwards is ignored.
        """
        if self._closing:
            return
        self._closing = True
        end_offset_ms = (time.monotonic() - self._mono0) * 1000
        dropped = self._drop_summary()
        del dropped["after_close"]  # always 0 here; the property keeps counting
        self._mb.put(Close(end_offset_ms, end_reason, dict(extra), dropped))

    async def wait_closed(self) -> None:
        """Wait until the files are final. Never raises for a disk error (see ``errors``)."""
        if not self._closing:
            raise RuntimeError("wait_closed() before close()")
        # shield: a caller cancelled here must not cancel the writer's own future.
        await asyncio.shield(asyncio.wrap_future(self._closed))

    async def flush(self) -> None:
        """Wait until everything enqueued so far is written and the WAV header is current.

        Runs the writer's tick early (silence up to the wall clock minus a quarter second).
        """
        if self._closing:
            await self.wait_closed()
            return
        fut: Future[None] = Future()
        self._mb.put(Sync(fut))
        await asyncio.wrap_future(fut)

    # ---- state ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.done()

    @property
    def errors(self) -> list[str]:
        """Writer errors so far (disk full, permission...); empty when all went well."""
        return list(self._writer.errors)

    @property
    def dropped(self) -> dict[str, Any]:
        return self._drop_summary()

    @property
    def queued(self) -> tuple[int, int]:
        """(items, audio bytes) waiting for the writer; bounded by the queue budget."""
        return len(self._mb), self._mb.queued_bytes

    def _drop_summary(self) -> dict[str, Any]:
        return {
            "caller_ms": round(self._dropped_bytes[0] / PCM_BYTES_PER_MS, 1),
            "agent_ms": round(self._dropped_bytes[1] / PCM_BYTES_PER_MS, 1),
            "transcript_lines": self._dropped_lines,
            "after_close": self._late_calls,
        }
