"""The small state types of a call, its extension points (hooks), and what a room sees of it.

Kept apart from :mod:`gateway.call.session` so the session module holds behaviour only, and
so the session's rooms (client events, upstream events, intake, agent audio) depend on
:class:`CallPort` instead of importing the session that composes them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.audio.formats import WireFormat
from gateway.config import Config, Profile
from gateway.legs.base import Leg
from gateway.legs.playout import QueuedFrame
from gateway.obs.metrics import Metrics
from gateway.upstream.client import UpstreamConnection

from .policy import ToolLookup

Event = dict[str, Any]

#: GA client event types a client may send; anything else gets an error event.
CLIENT_EVENT_TYPES = frozenset({
    "session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
    "input_audio_buffer.clear", "output_audio_buffer.clear", "conversation.item.create",
    "conversation.item.retrieve", "conversation.item.truncate", "conversation.item.delete",
    "response.create", "response.cancel",
})


@dataclass
class ItemState:
    """What the gateway knows about one assistant item while it is spoken."""

    response_id: str
    received_ms: float = 0.0
    transcript: str = ""
    truncated_ms: float | None = None


@dataclass
class CallStats:
    started_at: float = field(default_factory=time.time)
    caller_audio_ms: float = 0.0
    agent_audio_ms: float = 0.0
    interruptions: int = 0


class DirectionMetrics:
    """The labelled children one direction of a call touches per frame, looked up once."""

    def __init__(self, m: Metrics, direction: str) -> None:
        self.level = m.audio_level.labels(direction)
        self.peak = m.audio_peak.labels(direction)
        self.clipped = m.clipped_samples.labels(direction)
        self.seconds = m.audio_seconds.labels(direction)
        self.frame = m.frame_seconds.labels(direction)
        self.speech_frames = m.outbound_frames.labels("speech")
        self.silent_frames = m.outbound_frames.labels("silence")


@dataclass
class SessionHooks:
    """Extension points for the recorder, guards, tools and dialect translation."""

    to_client: list[Callable[[Event], list[Event]]] = field(default_factory=list)
    from_client: list[Callable[[Event], list[Event]]] = field(default_factory=list)
    function_output_guard: list[Callable[[Event], str | None]] = field(default_factory=list)
    caller_audio: list[Callable[[bytes, float, float], None]] = field(default_factory=list)
    agent_audio: list[Callable[[QueuedFrame | None, float], None]] = field(default_factory=list)
    playout: list[Callable[[bool], None]] = field(default_factory=list)
    upstream_event: list[Callable[[Event], None]] = field(default_factory=list)
    caller_text: list[Callable[[str, str], None]] = field(default_factory=list)
    agent_text: list[Callable[[str, ItemState], None]] = field(default_factory=list)
    interrupted: list[Callable[[str, int, ItemState | None], None]] = field(default_factory=list)
    on_close: list[Callable[[str], Awaitable[None]]] = field(default_factory=list)
    notes: list[Callable[[str, float, dict[str, Any]], None]] = field(default_factory=list)
    #: Consulted before an upstream event is handled: any False drops it (supervisor takeover).
    upstream_gate: list[Callable[[Event], bool]] = field(default_factory=list)


def wire_format_of(session: Event) -> WireFormat:
    fmt = ((session.get("audio") or {}).get("input") or {}).get("format") or {}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    return kind if kind in ("audio/pcmu", "audio/pcma") else "audio/pcm"


class CallPort(Protocol):
    """What the session's rooms use of their call (:class:`gateway.call.session.CallSession`)."""

    config: Config
    profile: Profile
    metrics: Metrics
    transport: str
    #: The client-visible GA session config.
    session: Event
    tool_lookup: ToolLookup
    stats: CallStats
    hooks: SessionHooks
    leg: Leg | None
    upstream: UpstreamConnection | None
    wire_format: WireFormat
    active_response: str | None
    closing: bool

    def call_ms(self) -> float: ...

    def send_to_client(self, event: Event) -> None: ...

    def client_error(self, code: str, message: str, *, param: str | None = None,
                     client_event_id: str | None = None) -> None: ...

    def forward(self, event: Event) -> None: ...

    def client_session(self, upstream_session: Any) -> Event: ...
