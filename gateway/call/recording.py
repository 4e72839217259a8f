"""Connects a call to its recorder: what the session observes becomes audio and transcript.

Agent utterances are written when their playback ends or is cut, so the transcript holds
what the caller heard (cut at a barge-in), not what the model generated.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gateway.audio.formats import PCM_BYTES_PER_MS
from gateway.legs.playout import QueuedFrame
from gateway.obs.metrics import Metrics
from gateway.recording.recorder import CallRecorder, TranscriptKind
from gateway.recording.s3 import S3Uploader

from .session import CallSession, ItemState

log = logging.getLogger("gateway.recording")

_NOTE_KINDS = {k.value for k in TranscriptKind}


def cut_transcript(text: str, heard_ms: float, total_ms: float) -> str:
    """The words of ``text`` the caller heard, pro rata of the audio played."""
    if total_ms <= 0 or heard_ms >= total_ms:
        return text
    words = text.split()
    return " ".join(words[: round(len(words) * max(0.0, heard_ms) / total_ms)])


class CallRecording:
    def __init__(self, call: CallSession, root: Path, metrics: Metrics, *,
                 opus_copy: bool, metadata: dict[str, Any],
                 uploader: S3Uploader | None = None) -> None:
        self.call = call
        self.uploader = uploader
        self.rec = CallRecorder.start(
            root, call.call_id, started_at=call.stats.started_at, metadata=metadata,
            opus_copy=opus_copy, on_bytes=metrics.recording_bytes.inc,
            on_error=metrics.recording_errors.inc)
        self._pending: dict[str, ItemState] = {}
        self._written: set[str] = set()
        h = call.hooks
        h.caller_audio.append(self._caller_audio)
        h.agent_audio.append(self._agent_audio)
        h.caller_text.append(self._caller_text)
        h.agent_text.append(self._agent_text)
        h.interrupted.append(self._interrupted)
        h.playout.append(self._playout)
        h.notes.append(self._note)
        h.on_close.append(self._close)

    def _caller_audio(self, pcm: bytes, rms: float, offset_ms: float) -> None:
        self.rec.caller_audio(pcm, offset_ms)

    def _agent_audio(self, frame: QueuedFrame | None, offset_ms: float) -> None:
        if frame is not None:
            n = int(frame.audio_ms * PCM_BYTES_PER_MS) & ~1
            self.rec.agent_audio(frame.pcm[:n], offset_ms)

    def _caller_text(self, item_id: str, text: str) -> None:
        self.rec.transcript("utterance", speaker="caller", text=text, item_id=item_id,
                            offset_ms=self.call.call_ms())

    def _agent_text(self, item_id: str, st: ItemState) -> None:
        if st.truncated_ms is not None:
            self._write_agent(item_id, st)
        else:
            self._pending[item_id] = st

    def _write_agent(self, item_id: str, st: ItemState) -> None:
        if item_id in self._written:
            return  # an interruption already wrote what was heard of it
        self._written.add(item_id)
        text = st.transcript
        extra: dict[str, Any] = {}
        if st.truncated_ms is not None:
            text = cut_transcript(text, st.truncated_ms, st.received_ms)
            extra = {"truncated": True, "heard_ms": st.truncated_ms,
                     "full_text": st.transcript}
        self.rec.transcript("utterance", speaker="agent", text=text, item_id=item_id,
                            offset_ms=self.call.call_ms(), **extra)

    def _interrupted(self, item_id: str, heard_ms: int, st: ItemState | None) -> None:
        self.rec.transcript("interruption", speaker="caller", item_id=item_id,
                            offset_ms=self.call.call_ms(), heard_ms=heard_ms)
        # The cancelled response may never send its transcript's "done": write what was
        # heard from the deltas received so far.
        pending = self._pending.pop(item_id, None) or st
        if pending is not None and pending.transcript:
            self._write_agent(item_id, pending)

    def _playout(self, started: bool) -> None:
        if not started:
            self._flush()

    def _flush(self) -> None:
        for item_id, st in list(self._pending.items()):
            del self._pending[item_id]
            self._write_agent(item_id, st)

    def _note(self, kind: str, offset_ms: float, fields: dict[str, Any]) -> None:
        fields = dict(fields)
        speaker = fields.pop("speaker", None)
        text = fields.pop("text", None)
        item_id = fields.pop("item_id", None)
        if kind not in _NOTE_KINDS:
            fields["event"] = kind
            kind = "note"
        self.rec.transcript(kind, speaker=speaker, text=text, item_id=item_id,
                            offset_ms=offset_ms, **fields)

    async def _close(self, reason: str) -> None:
        self._flush()
        stats = self.call.stats
        self.rec.close(reason, {"interruptions": stats.interruptions,
                                "caller_audio_s": round(stats.caller_audio_ms / 1000, 3),
                                "agent_audio_s": round(stats.agent_audio_ms / 1000, 3)})
        await self.rec.wait_closed()
        if self.uploader is not None and (self.rec.directory / "metadata.json").is_file():
            self.uploader.enqueue(self.rec.directory)
