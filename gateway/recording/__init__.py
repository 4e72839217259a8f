"""Compliance recording: time-aligned stereo WAV, transcript, checksummed metadata.

- ``CallRecorder`` (recorder.py): what a call session records into; a writer thread per call.
- ``recover`` (recover.py): run at start-up; finalizes calls whose process died.
- ``RecordingStore`` (store.py): list / verify / export / delete / purge, from the files.
- ``add_routes`` (api.py): ``/admin/recordings`` behind the admin token.
- ``cli.main``: ``python -m gateway recordings ...``.
"""

from __future__ import annotations

from .api import RECORDINGS_ROOT, RECORDINGS_STORE, add_routes
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
    "RECORDINGS_ROOT",
    "RECORDINGS_STORE",
    "CallRecorder",
    "InvalidCallId",
    "InvalidQuery",
    "Page",
    "RecordingInProgress",
    "RecordingNotFound",
    "RecordingStore",
    "TranscriptKind",
    "add_routes",
    "recover",
]
