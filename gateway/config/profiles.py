"""Profiles (the operator's agents: model names, instructions, voice, tools, locks), the
server-VAD presets they name, and tool definitions."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class VadPreset:
    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int

    def turn_detection(self, *, create_response: bool = True,
                       interrupt_response: bool = True) -> dict[str, Any]:
        return {"type": "server_vad", "threshold": self.threshold,
                "prefix_padding_ms": self.prefix_padding_ms,
                "silence_duration_ms": self.silence_duration_ms,
                "create_response": create_response, "interrupt_response": interrupt_response}


VAD_PRESETS: dict[str, VadPreset] = {
    "quiet_office": VadPreset(0.4, 200, 500),
    "noisy_call_center": VadPreset(0.7, 400, 700),
    "phone_line": VadPreset(0.5, 300, 600),
}

#: The model names client code hard-codes, per API (the ``openai`` package's model lists):
#: a profile with no ``models`` of its own answers to these.
DEFAULT_MODEL_PATTERNS: dict[str, tuple[str, ...]] = {
    "realtime": ("gpt-realtime*", "gpt-4o-realtime-preview*", "gpt-4o-mini-realtime-preview*",
                 "gpt-4o-transcribe*", "gpt-4o-mini-transcribe*", "whisper-1"),
    "live": ("gpt-live*",),
}
APIS = frozenset(DEFAULT_MODEL_PATTERNS)

#: Session fields a profile may lock (``Profile.locked``). The model is always the operator's.
CHANGEABLE_FIELDS = frozenset({
    "instructions", "voice", "speed", "turn_detection", "tools", "tool_choice",
    "output_modalities", "transcription", "noise_reduction", "max_output_tokens", "include",
    "truncation", "tracing",
})


@dataclass(frozen=True, slots=True)
class Profile:
    """An agent: what the operator decides for the calls that pick it.

    Transparent by default: a client may set any session field it could set at OpenAI, and
    nothing is locked until ``locked`` names it. The upstream model is always the operator's.
    """

    name: str
    #: Which OpenAI voice API this profile's calls speak upstream: "realtime" or "live".
    api: str = "realtime"
    #: What clients see as ``model``.
    model: str = "gpt-realtime"
    #: Model names that pick this profile: exact names or shell patterns (``gpt-realtime*``).
    #: Empty: the usual names of the profile's API (see :data:`DEFAULT_MODEL_PATTERNS`).
    models: tuple[str, ...] = ()
    #: Exact model names that also pick this profile (kept for older configs).
    aliases: tuple[str, ...] = ()
    #: The real upstream model; never shown to a client.
    upstream_model: str = "gpt-realtime"
    instructions: str = "You are a helpful, concise voice assistant."
    voice: str = "marin"
    turn_detection: str = "quiet_office"
    transcription_model: str | None = "gpt-4o-mini-transcribe"
    #: Server tools: run on the gateway. Tools a client declares are the client's own.
    tools: tuple[str, ...] = ("lookup_customer", "schedule_appointment")
    #: Session fields (from :data:`CHANGEABLE_FIELDS`) a client holding a token may not
    #: change, on any event that can carry them (``session.update``, ``response.create``,
    #: ``conversation.item.create`` with a system/developer message, Live's appends).
    locked: tuple[str, ...] = ()
    #: Locks hold for API-key holders too (a backend minting tokens, a server program on the
    #: WebSocket, a sideband connection); by default those are trusted like an OpenAI key.
    lock_api_keys: bool = False
    #: Older configs: the fields a client may change (every other changeable field is
    #: locked). Superseded by ``locked``; empty means "not used".
    client_may_change: tuple[str, ...] = ()
    recording: bool = True
    #: Record only calls whose token request carried ``recording_consent: true``.
    recording_requires_consent: bool = False
    #: When the caller's microphone goes silent, the agent asks whether they can hear it.
    ask_on_dead_mic: bool = True

    def names(self) -> tuple[str, ...]:
        return (self.model, *self.aliases)

    def model_patterns(self) -> tuple[str, ...]:
        return self.models or DEFAULT_MODEL_PATTERNS.get(self.api, ())

    def matches_model(self, model: str) -> bool:
        """Exact names first (``model``, ``aliases``, the profile's own name), then patterns."""
        if model in self.names() or model == self.name:
            return True
        return any(fnmatch.fnmatchcase(model, pat) for pat in self.model_patterns())

    def locked_fields(self) -> frozenset[str]:
        if self.locked:
            return frozenset(self.locked)
        if self.client_may_change:
            return CHANGEABLE_FIELDS - frozenset(self.client_may_change)
        return frozenset()


@dataclass(frozen=True, slots=True)
class ToolConfig:
    name: str
    kind: str = "builtin"  # builtin | webhook | python
    description: str = ""
    parameters: Mapping[str, Any] | None = None
    url: str = ""
    target: str = ""
    timeout_s: float = 8.0
    auth_env: str = ""  # environment variable holding the webhook's credential
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    filler_after_s: float = 1.5
