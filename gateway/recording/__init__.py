"""Compliance recording: time-aligned stereo WAV, transcript, checksummed metadata.

- ``CallRecorder`` (recorder.py): what a call session records into; a writer thread per call.
- ``recover`` (recover.py): run at start-up; finalizes calls whose process died.
- ``RecordingStore`` (store.py): list / verify / export / delete / purge, from the files.
- ``cli.main``: ``python -m gateway recordings ...``.

May import: audio, obs, config/ids/errors. Its HTTP routes are ``gateway.api.recordings``.
"""

from __future__ import annotations

from .recorder import CallRecorder, TranscriptKind
from .recover import recover
from .store import (
    InvalidCallId,
    InvalidQuery,
    Page,
    RecordingInProgress,
    RecordingNotFound,
    RecordingStore,
)

__all__ = [
    "CallRecorder",
    "InvalidCallId",
    "InvalidQuery",
    "Page",
    "RecordingInProgress",
    "RecordingNotFound",
    "RecordingStore",
    "TranscriptKind",
    "recover",
]
