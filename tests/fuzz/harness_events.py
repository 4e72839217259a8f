"""Client events on the data channel / WebSocket (GA and beta), the policy, server events, and
Twilio's media-stream frames: through the gateway's real code with a fake leg and upstream.

Oracles: nothing but the expected errors escapes (a client's bad event is an ``error`` event
back, never an exception); every event a client gets has a ``type``, every error event the
OpenAI shape; what goes upstream is bounded by what came in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from gateway import config as config_mod
from gateway.api.twilio import parse_start
from gateway.call import locks, policy
from gateway.call.dialect import attach_beta
from gateway.call.session import CallSession
from gateway.config import CHANGEABLE_FIELDS
from gateway.legs.twilio_leg import TwilioLeg
from gateway.obs.metrics import Metrics
from gateway.upstream import dialect
from gateway.upstream.dialect_checks import DialectError

from .harness import Harness, lines, loop

_CFG = config_mod.load(None, {"GATEWAY_API_KEYS": "sk-fuzz", "GATEWAY_TOKEN_SECRET": "fz"})
_BASE = _CFG.profiles[_CFG.default_profile]
#: Every changeable field locked: the policy has the most to check.
_LOCKED = dataclasses.replace(_BASE, locked=tuple(sorted(CHANGEABLE_FIELDS)))
_METRICS = Metrics()
_TOOL = {"type": "function", "name": "lookup_customer", "description": "d",
         "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}}


def _lookup(name: str) -> dict[str, Any] | None:
    return dict(_TOOL, name=name) if name in _BASE.tools else None


class FakeUpstream:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.audio = 0

    def send(self, event: dict[str, Any]) -> None:
        self.sent.append(event)

    def send_audio(self, b64: str) -> None:
        self.audio += len(b64)

    async def close(self) -> None:
        pass


class FakeLeg:
    transport = "webrtc"
    forwards_audio_events = False
    audio_active = False

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def send_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def play_audio(self, pcm: bytes, item_id: str, response_id: str) -> None:
        pass

    def end_audio(self, item_id: str) -> None:
        pass

    def interrupt(self) -> tuple[str | None, float]:
        return None, 0.0

    def played_ms(self, item_id: str) -> float:
        return 0.0

    async def close(self) -> None:
        pass


def _check_client_events(events: list[dict[str, Any]]) -> None:
    for e in events:
        assert isinstance(e, dict) and isinstance(e.get("type"), str), e
        if e["type"] == "error":
            assert set(e["error"]) >= {"type", "code", "message", "param"}, e
        json.dumps(e)  # what the leg does with it


async def _events(data: bytes) -> None:
    beta = bool(data[:1]) and data[0] & 1 == 1
    profile = _LOCKED if data[:1] and data[0] & 2 else _BASE
    session = policy.base_session(profile, _lookup)
    call = CallSession(call_id="rtc_fuzz", config=_CFG, profile=profile, metrics=_METRICS,
                       transport="webrtc", dialect="beta" if beta else "ga",
                       session=session, tool_lookup=_lookup)
    leg, up = FakeLeg(), FakeUpstream()
    call.leg, call.upstream = leg, up  # type: ignore[assignment]
    call.effective = session
    if beta:
        attach_beta(call)
    n = 0
    for text in lines(data[1:]):
        n += 1
        call.on_client_text(text)
    _check_client_events(leg.events)
    assert len(up.sent) <= 4 * n + 4, (len(up.sent), n)
    call.closing = True
    for t in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
        t.cancel()


def events_input(data: bytes) -> None:
    """First byte: bit 0 beta dialect, bit 1 every field locked; then one event a line."""
    loop().run_until_complete(_events(data))


def policy_input(data: bytes) -> None:
    """``session.update``'s merge under the profile, and the server side's rewrites."""
    for text in lines(data, 8):
        try:
            value = json.loads(text)
        except ValueError:
            continue
        for profile in (_BASE, _LOCKED):
            base = policy.base_session(profile, _lookup)
            for trust in (policy.TOKEN, policy.API_KEY):
                # The same locks on the events that carry a field per response or item.
                if isinstance(value, dict):
                    try:
                        locks.check_response_create(value, base, profile, _lookup, trust)
                        locks.check_item(value.get("item"), profile, trust)
                    except policy.PolicyError:
                        pass
            try:
                new = policy.apply_update(base, value, profile, _lookup)
            except policy.PolicyError:
                continue
            json.dumps(policy.for_upstream(new))
            json.dumps(policy.for_client(new, profile, _lookup))
        if isinstance(value, dict):
            try:
                for out in dialect.server_event_ga_to_beta(value):
                    json.dumps(out)
            except DialectError:
                pass


_GA = [
    {"type": "session.update", "session": {"type": "realtime", "instructions": "x",
                                           "tools": [{"type": "function", "name": "f"}],
                                           "audio": {"output": {"voice": "alloy"}}}},
    {"type": "response.create", "response": {"instructions": "say hi", "tools": [],
                                             "conversation": "none", "metadata": {"a": "b"}}},
    {"type": "conversation.item.create", "item": {"type": "message", "role": "system",
                                                  "content": [{"type": "input_text",
                                                               "text": "x"}]}},
    {"type": "conversation.item.create", "item": {"type": "function_call_output",
                                                  "call_id": "c1", "output": "{}"}},
    {"type": "input_audio_buffer.append", "audio": "AAAAAA=="},
    {"type": "input_audio_buffer.commit"}, {"type": "output_audio_buffer.clear"},
    {"type": "response.cancel"}, {"type": "conversation.item.truncate", "item_id": "i",
                                  "content_index": 0, "audio_end_ms": 5},
]
_BETA = [
    {"type": "session.update", "session": {"modalities": ["audio", "text"], "voice": "alloy",
                                           "input_audio_format": "pcm16",
                                           "turn_detection": {"type": "server_vad"},
                                           "tools": [{"type": "function", "name": "f"}]}},
    {"type": "response.create", "response": {"modalities": ["text"], "instructions": "x"}},
    {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                  "content": [{"type": "input_audio",
                                                               "audio": "AAAA"}]}},
    {"type": "transcription_session.update", "session": {}},
]


def _lines(events: list[dict[str, Any]]) -> bytes:
    return b"\n".join(json.dumps(e).encode() for e in events)


EVENTS = Harness("events", events_input, (
    b"\x00" + _lines(_GA), b"\x02" + _lines(_GA), b"\x01" + _lines(_BETA),
    b"\x03" + _lines(_BETA + _GA)),
    ("gateway/call/session.py", "gateway/call/client_events.py", "gateway/call/policy.py",
     "gateway/call/intake.py", "gateway/call/dialect.py", "gateway/upstream/dialect.py",
     "gateway/upstream/dialect_items.py", "gateway/upstream/dialect_fields.py",
     "gateway/upstream/dialect_session.py", "gateway/upstream/dialect_checks.py"),
    (b'"type"', b'"session"', b'"item"', b'"response"', b'"instructions"', b'"tools"',
     b'"role":"system"', b'{"a":' * 4, b'[' * 8, b'"audio"', b'"turn_detection"'))

_SERVER = [{"type": "session.updated", "session": {"type": "realtime", "model": "m"}},
           {"type": "response.output_audio_transcript.delta", "delta": "hi", "item_id": "i",
            "response_id": "r", "output_index": 0, "content_index": 0},
           {"type": "conversation.item.added", "item": {"type": "message", "role": "user",
                                                        "content": []}},
           {"type": "error", "error": {"type": "invalid_request_error", "code": "x",
                                       "message": "m", "param": "session.audio"}}]
POLICY = Harness("policy", policy_input, (
    b"\n".join(json.dumps(e.get("session", e)).encode() for e in _GA + _BETA),
    _lines(_SERVER)), ("gateway/call/policy.py", "gateway/upstream/dialect.py",
                       "gateway/upstream/dialect_items.py", "gateway/upstream/dialect_fields.py",
                       "gateway/upstream/dialect_session.py"),
    (b'"audio"', b'"input"', b'"format"', b'"turn_detection"', b'"tools"', b'"voice"'))

# -- Twilio ----------------------------------------------------------------------------------


class _TwilioSink:
    def __init__(self) -> None:
        self.samples = 0

    def on_caller_audio(self, pcm: Any, wire: bytes | None = None) -> None:
        self.samples += len(pcm)

    def on_agent_frame(self, frame: Any, offset_ms: float) -> None:
        pass

    def on_playout(self, started: bool, response_id: str) -> None:
        pass

    def on_leg_gone(self, reason: str) -> None:
        pass


class _Ws:
    closed = False

    async def send_str(self, data: str) -> None:
        pass

    async def close(self, **kw: Any) -> None:
        self.closed = True


async def _twilio(data: bytes) -> None:
    sink = _TwilioSink()
    fmt = "audio/pcmu" if data[:1] and data[0] & 1 else "audio/pcm"
    leg = TwilioLeg(_Ws(), sink, stream_sid="MZfuzz", wire_format=fmt,  # type: ignore[arg-type]
                    max_buffer_s=2.0, dead_peer_s=30.0, on_dtmf=lambda d: None)
    try:
        for i, text in enumerate(lines(data[1:])):
            try:
                msg = json.loads(text)
            except ValueError:
                msg = None
            if isinstance(msg, dict) and msg.get("event") == "start":
                parse_start(msg)  # the handshake's parse, before any token is checked
            leg.on_text(text)
            if i == 2:
                leg.play_audio(b"\x00\x01" * 960, "item_f", "resp_f")  # marks outstanding
        assert sink.samples >= 0
    finally:
        await leg.close()


def twilio_input(data: bytes) -> None:
    """First byte: bit 0 µ-law pass-through; then Twilio messages, one a line."""
    loop().run_until_complete(_twilio(data))


_TW = [{"event": "connected", "protocol": "Call", "version": "1.0.0"},
       {"event": "start", "sequenceNumber": "1", "streamSid": "MZfuzz", "start": {
           "streamSid": "MZfuzz", "callSid": "CA1", "tracks": ["inbound"],
           "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
           "customParameters": {"token": "ek_x.y", "profile": "default"}}},
       {"event": "media", "sequenceNumber": "2", "streamSid": "MZfuzz", "media": {
           "track": "inbound", "chunk": "1", "timestamp": "5", "payload": "//////////8="}},
       {"event": "mark", "streamSid": "MZfuzz", "mark": {"name": "resp_f:1"}},
       {"event": "dtmf", "streamSid": "MZfuzz", "dtmf": {"track": "inbound_track",
                                                          "digit": "5"}},
       {"event": "stop", "streamSid": "MZfuzz", "stop": {"callSid": "CA1"}}]
TWILIO = Harness("twilio", twilio_input, (b"\x00" + _lines(_TW), b"\x01" + _lines(_TW)),
                 ("gateway/legs/twilio_leg.py", "gateway/legs/twilio_audio.py",
                  "gateway/api/twilio.py"),
                 (b'"event"', b'"media"', b'"mark"', b'"payload"', b'"streamSid":"MZfuzz"'))
