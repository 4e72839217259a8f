"""The engine's pure parts, without a server: agent, spoken values, tool follow-ups, VAD gate,
and the oracle itself."""

from __future__ import annotations

import ast
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from gateway.localrt.agent import Agent, Turn
from gateway.localrt.conversation import Item, Segment, truncate
from gateway.localrt.engine import Engine
from gateway.localrt.followup import describe
from gateway.localrt.listener import Listener, Pause, Ring, SpeechStopped
from gateway.localrt.sessionconfig import TurnDetection
from gateway.localrt.spoken import digit_string, parse_date, parse_time, say_time, tokens
from gateway.localrt.textnorm import spoken
from gateway.localrt.vad import WINDOW, SpeechGate
from tests.oracle import validate_client_event, validate_server_event

from .helpers import TOOLS, speech

TUESDAY = dt.date(2026, 11, 24)


def agent() -> Agent:
    return Agent(today=lambda: TUESDAY)


@pytest.mark.parametrize(("said", "tool", "args"), [
    ("look up account number one two three four five", "lookup_customer",
     {"account_id": "12345"}),
    ("my phone number is five five five one two three four", "lookup_customer",
     {"phone": "5551234"}),
    ("schedule an appointment for friday at three p m", "schedule_appointment",
     {"date": "2026-11-27", "time": "15:00"}),
    ("book an appointment on march fifth at ten thirty for jane doe", "schedule_appointment",
     {"date": "2027-03-05", "time": "10:30", "name": "Jane Doe"}),
])
def test_agent_calls_declared_tools_with_spoken_arguments(said: str, tool: str,
                                                          args: dict[str, str]) -> None:
    reply = agent().reply(Turn("user", said), TOOLS, "auto")
    assert reply.tool_call is not None
    assert (reply.tool_call.name, reply.tool_call.arguments) == (tool, args)


def test_agent_asks_for_what_is_missing_and_remembers() -> None:
    a = agent()
    assert "day and time" in a.reply(Turn("user", "i need an appointment"), TOOLS, "auto").text
    reply = a.reply(Turn("user", "tomorrow at nine a m"), TOOLS, "auto")
    assert reply.tool_call is not None
    assert reply.tool_call.arguments == {"date": "2026-11-25", "time": "09:00"}


def test_agent_without_tools_greets_helps_and_repeats() -> None:
    a = agent()
    assert a.reply(Turn("user", "hello there"), [], "auto").text.startswith("Hello")
    assert "look up" not in a.reply(Turn("user", "what can you do"), [], "auto").text
    assert "no lookup tool" in a.reply(Turn("user", "look up account 12345"), [], "auto").text
    assert a.reply(Turn("user", "the weather is lovely"), [], "auto").text == \
        "You said: the weather is lovely."
    assert a.reply(Turn("user", "say that again", previous_reply="It was this."), [],
                   "auto").text == "It was this."
    assert a.reply(Turn("none"), TOOLS, "none").text.startswith("Hello")
    assert a.reply(Turn("user", "look up account 12345"), TOOLS, "none").tool_call is None


@pytest.mark.parametrize(("output", "spoken"), [
    ('{"customer": {"name": "Jane Doe", "account_id": "12345"}}',
     "I found Jane Doe, account 1 2 3 4 5."),
    ('{"first_name": "Jane", "last_name": "Doe", "phone": "5551234"}',
     "I found Jane Doe, phone 5 5 5 1 2 3 4."),
    ('{"status": "booked", "date": "2026-11-27", "time": "15:00"}',
     "The appointment is booked for Friday, November 27 at 3 PM."),
    ('{"error": "customer not found"}', "Sorry, that did not work: customer not found."),
    ('{"error": {"message": "bad phone"}}', "Sorry, that did not work: bad phone."),
    ('{"message": "All set"}', "All set."),
    ("plain words", "plain words"),
])
def test_tool_output_is_spoken_with_its_facts(output: str, spoken: str) -> None:
    assert describe("lookup_customer", output) == spoken
    turn = Turn("tool_output", outputs=(("lookup_customer", output),))
    assert agent().reply(turn, TOOLS, "auto").text == spoken


def test_spoken_values() -> None:
    assert digit_string(tokens("ten thirty")) == ""  # a time, not an account
    assert digit_string(tokens("account 12-345")) == "12345"
    assert parse_time(tokens("at 3:15pm")) == "15:15"
    assert parse_time(tokens("noon")) == "12:00"
    assert parse_time(tokens("at four")) == "16:00"
    assert parse_date(tokens("the twenty fifth of december"), TUESDAY) == "2026-12-25"
    assert parse_date(tokens("tuesday"), TUESDAY) == "2026-12-01"  # the next one
    assert say_time("09:05") == "9:05 AM"


@pytest.mark.parametrize(("written", "said"), [
    ("Look up account 12345.", "look up account one two three four five"),
    ("Schedule it for Tuesday at 10:30 p.m.", "schedule it for tuesday at ten thirty p m"),
    ("Account number four for seven two one.", "account number four four seven two one"),
    ("five, five, to one two", "five five two one two"),
    ("Book for two at 10 for Jane.", "book for two at ten for jane"),  # not digit runs
    ("At five to three.", "at five to three"),  # a time: one digit each side
])
def test_written_transcripts_become_spoken_words(written: str, said: str) -> None:
    assert spoken(written) == said


def test_truncate_keeps_the_words_heard() -> None:
    item = Item("item_1", "message", role="assistant",
                content=[{"type": "output_audio", "transcript": "One two. Three four five six."}],
                segments=[Segment("One two.", 0, 1000), Segment("Three four five six.", 1000,
                                                                3000)], audio_ms=3000)
    truncate(item, 2000)
    assert item.content[0]["transcript"] == "One two. Three four"


def test_ring_addresses_absolute_positions() -> None:
    ring = Ring(10)
    ring.write(np.arange(25, dtype=np.int16))
    assert ring.start == 15 and ring.end == 25
    assert list(ring.read(0, 18)) == [15, 16, 17]


class _Script:
    """A stand-in for silero: replays scripted speech probabilities, one per window."""

    def __init__(self, probs: list[float]) -> None:
        self.probs = iter(probs)

    def process(self, data: memoryview) -> float:
        return next(self.probs)

    def reset(self) -> None:
        pass


def test_speech_gate_hysteresis_and_silence_window() -> None:
    # 2 quiet, 1 click, 2 quiet, 10 speech, 2 dips (above the release level), 20 quiet.
    probs = [0.0] * 2 + [0.9] + [0.0] * 2 + [0.9] * 10 + [0.4] * 2 + [0.0] * 20
    gate = SpeechGate(_Script(probs))
    gate.configure(threshold=0.5, silence_ms=320)
    edges = gate.push(np.zeros(WINDOW * len(probs), dtype=np.int16))
    assert [(e.kind, e.sample // WINDOW) for e in edges] == [("start", 5), ("stop", 17)]


def test_oracle_catches_what_the_sdk_allows() -> None:
    ok = {"type": "input_audio_buffer.speech_started", "event_id": "e", "audio_start_ms": 1,
          "item_id": "i"}
    validate_server_event(ok)
    for bad in ({**ok, "extra": 1}, {**ok, "audio_start_ms": 1.0},
                {"type": "response.audio.delta", "event_id": "e"}):
        with pytest.raises(AssertionError):
            validate_server_event(bad)
    validate_client_event({"type": "response.create"})
    with pytest.raises(AssertionError):
        validate_client_event({"type": "session.update", "session": {"type": "realtime",
                                                                     "voice": "alloy"}})
    assert json.dumps(ok)


#: The command line starts the engine (``python -m gateway localrt``); nothing else may import it.
_MAY_IMPORT_ENGINE = {"__main__.py", "cli.py"}


def test_gateway_core_never_imports_the_engine() -> None:
    root = Path(__file__).resolve().parents[2] / "gateway"
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0] == "localrt" or str(rel) in _MAY_IMPORT_ENGINE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [f"{node.module or ''}.{a.name}" for a in node.names] \
                if isinstance(node, ast.ImportFrom) else []
            if any("localrt" in n for n in names):
                offenders.append(str(rel))
    assert not offenders, f"the gateway core imports gateway.localrt: {offenders}"


def test_listener_starts_decoding_after_an_in_place_push(engine: Engine) -> None:
    """Between turns pushes run in place without decoding; a turn detected there is decoded
    by the next push from its padded start, as if everything had been decoded all along."""
    heard = {}
    for in_place in (False, True):
        listener = Listener(engine.vads.acquire(), engine.asr.recognizer())
        listener.configure("audio/pcm", TurnDetection("server_vad"))
        data, events = speech("lookup_account"), []
        for at in range(0, len(data), 960):
            decode = not (in_place and listener.light)
            events += listener.push(data[at:at + 960], decode=decode)
        engine.vads.release(listener.close())
        stops = [e for e in events if isinstance(e, SpeechStopped)]
        assert len(stops) == 1 and any(isinstance(e, Pause) for e in events)
        heard[in_place] = engine.asr.finalize(stops[0].utterance).text
    assert heard[True] == heard[False] == "look up account number one two three four five"
