"""A deterministic rule-based agent: the honest default when no language model ships offline.

It greets, helps, repeats what it heard, and calls the tutorial's tools ``lookup_customer``
(``phone`` or ``account_id``) and ``schedule_appointment`` (``date``, ``time``, ``name``,
``account_id``) when the session declares them, with arguments taken from the utterance and
from what it remembers of the call. Pure: no I/O, no clock except the injected ``today``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from . import followup, instructions, toolintent
from .phrases import FIRST_NAMES, LAST_NAMES
from .spoken import WEEKDAYS, digit_string, parse_date, parse_time, tokens

Json = dict[str, Any]

LOOKUP = "lookup_customer"
SCHEDULE = "schedule_appointment"

# Canonical slot -> the property names a tool schema may use for it.
_PROPERTY_NAMES = {
    "phone": ("phone", "phone_number", "phoneNumber"),
    "account_id": ("account_id", "account", "account_number", "accountId", "customer_id"),
    "date": ("date", "day", "appointment_date"),
    "time": ("time", "appointment_time"),
    "name": ("name", "customer_name", "full_name"),
}
_NOT_NAMES = frozenset({"the", "a", "an", "account", "today", "tomorrow", "next", "me", "my",
                        "at", "on", "noon", "phone", *WEEKDAYS})


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: Json


@dataclass(frozen=True, slots=True)
class Reply:
    text: str = ""
    tool_call: ToolCall | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """What the agent answers: the newest input of the conversation."""

    kind: Literal["user", "tool_output", "none"]
    text: str = ""
    outputs: tuple[tuple[str, str], ...] = ()  # (tool name, output) pairs
    instructions: str | None = None  # response.create's own instructions
    previous_reply: str = ""  # the last assistant transcript, as heard (after truncation)


@dataclass(slots=True)
class Agent:
    today: Callable[[], dt.date] = dt.date.today
    memory: dict[str, str] = field(default_factory=dict)
    pending: str | None = None  # an intent waiting for its missing arguments
    partial: dict[str, str] = field(default_factory=dict)
    tool_args: Json = field(default_factory=dict)  # a generic tool's arguments so far
    turns_of: dict[str, int] = field(default_factory=dict)  # how often each line kind was said

    def pick(self, kind: str, options: tuple[str, ...]) -> str:
        """The next of ``options`` for this kind of line: replies vary over a call."""
        n = self.turns_of.get(kind, 0)
        self.turns_of[kind] = n + 1
        return options[n % len(options)]

    def reply(self, turn: Turn, tools: list[Json], tool_choice: str | Json) -> Reply:
        said = instructions.follow(turn.instructions, self.pick)
        if said:
            return Reply(said)
        if turn.kind == "tool_output":
            for _, output in turn.outputs:
                self.memory.update(followup.facts(output))
            return Reply(" ".join(followup.describe(name, out) for name, out in turn.outputs))
        if turn.kind == "none":
            return Reply("Hello! I am the local test agent. How can I help you today?")
        declared = {} if tool_choice == "none" else {
            t["name"]: t for t in tools if isinstance(t.get("name"), str)}
        reply = self._answer(turn, declared)
        return _apply_tool_choice(reply, tool_choice, declared, self._slots(turn.text))

    # -- intents ---------------------------------------------------------------------------

    def _answer(self, turn: Turn, tools: dict[str, Json]) -> Reply:
        text = turn.text.strip()
        words = tokens(text)
        ws = set(words)
        if not words:
            return Reply("Sorry, I did not catch that. Could you say it again?")
        if ({"repeat", "say"} & ws and ({"that", "again"} & ws) and len(words) <= 4) or \
                " ".join(words[-3:]) == "did you say":
            return Reply(turn.previous_reply or "I have not said anything yet.")
        m = re.match(r"\s*(?:please\s+)?(?:repeat after me|say)\b[,:]?\s*(.+)", text, re.I)
        if m:
            return Reply(m.group(1).strip())
        slots = self._slots(text)
        generic = {k: v for k, v in tools.items() if k not in (LOOKUP, SCHEDULE)}
        if self.pending in generic:
            return self._generic_tool(str(self.pending), generic[str(self.pending)], text,
                                      answering=True)
        if self._is_schedule(ws, slots):
            return self._schedule(slots, tools)
        if self._is_lookup(ws, slots):
            return self._lookup(slots, tools)
        if "help" in ws or "options" in ws or " ".join(words[:4]) == "what can you do":
            return Reply(_capabilities(tools))
        chosen = toolintent.match(text, generic)
        if chosen is not None:
            self.tool_args = {}
            return self._generic_tool(chosen, generic[chosen], text, answering=False)
        if "name" in slots and {"name", "this"} & ws:
            self.memory["name"] = slots["name"]
            return Reply(f"Nice to meet you, {slots['name']}. How can I help?")
        if words[0] in ("hello", "hi", "hey", "greetings") or words[:1] == ["good"] and \
                ws & {"morning", "afternoon", "evening"}:
            return Reply(self.pick("hello", ("Hello! How can I help you today?",
                                             "Hi! What can I do for you?",
                                             "Hello again. How can I help?")))
        if ws & {"bye", "goodbye"}:
            return Reply(self.pick("bye", ("Goodbye! Have a nice day.", "Bye, take care!",
                                           "Goodbye, thanks for calling.")))
        if ws & {"thank", "thanks"}:
            return Reply(self.pick("thanks", ("You're welcome. Anything else?",
                                              "Happy to help. Anything else?",
                                              "You're welcome.")))
        if "who are you" in text.lower() or "your name" in text.lower():
            return Reply("I am the local test agent, a rule-based stand-in for a realtime "
                         "model. I run offline.")
        if "how are you" in text.lower():
            return Reply("I am fine, thank you. How can I help?")
        self.pending = None
        return Reply(f"You said: {text.rstrip('.!?')}.")

    def _generic_tool(self, name: str, tool: Json, text: str, answering: bool) -> Reply:
        """Fill a declared tool's arguments from what was said (the answer to our question
        first), ask for the first missing required one, or call it."""
        props = toolintent.properties(tool)
        slots = _arguments(tool, self._slots(text)) if props else {}
        asked = self.tool_args.pop("?", None) if answering else None
        for prop, schema in props.items():
            if prop in self.tool_args:
                continue
            value = slots.get(prop)
            if value is None:
                value = toolintent.value_for(prop, schema, text, whole=prop == asked)
            if value is not None:
                self.tool_args[prop] = value
        missing = [p for p in toolintent.required(tool) if p not in self.tool_args]
        if missing:
            self.pending = name
            self.tool_args["?"] = missing[0]
            return Reply(toolintent.ask_for(missing[0], props.get(missing[0], {})))
        args, self.tool_args, self.pending = self.tool_args, {}, None
        return Reply(tool_call=ToolCall(name, args))

    def _is_schedule(self, ws: set[str], slots: dict[str, str]) -> bool:
        if ws & {"appointment", "schedule", "book", "reschedule"}:
            return True
        return self.pending == SCHEDULE and bool({"date", "time"} & slots.keys())

    def _is_lookup(self, ws: set[str], slots: dict[str, str]) -> bool:
        if ({"look", "lookup", "find", "check", "search"} & ws) and \
                ({"customer", "account", "phone", "number", "up"} & ws):
            return True
        if self.pending == LOOKUP and ({"phone", "account_id"} & slots.keys()):
            return True
        return bool({"phone", "account_id"} & slots.keys()) and \
            bool({"number", "phone", "account"} & ws)

    def _lookup(self, slots: dict[str, str], tools: dict[str, Json]) -> Reply:
        if LOOKUP not in tools:
            self.pending = None
            return Reply("I cannot look up customers here: this session declares no "
                         "lookup tool.")
        key = "phone" if "phone" in slots else "account_id" if "account_id" in slots else None
        if key is None:
            self.pending = LOOKUP
            return Reply("Sure. What is the phone number or the account number?")
        self.pending = None
        self.memory[key] = slots[key]
        return Reply(tool_call=ToolCall(LOOKUP, _arguments(tools[LOOKUP], {key: slots[key]})))

    def _schedule(self, slots: dict[str, str], tools: dict[str, Json]) -> Reply:
        if SCHEDULE not in tools:
            self.pending = None
            return Reply("I cannot book appointments here: this session declares no "
                         "scheduling tool.")
        if self.pending != SCHEDULE:
            self.partial = {}
        self.partial.update({k: v for k, v in slots.items() if k in ("date", "time", "name",
                                                                       "account_id")})
        if "date" not in self.partial or "time" not in self.partial:
            self.pending = SCHEDULE
            return Reply("Sure. For which day and time?" if "date" not in self.partial
                         else "At what time?")
        args = dict(self.partial)
        for key in ("name", "account_id"):
            if key not in args and key in self.memory:
                args[key] = self.memory[key]
        self.pending, self.partial = None, {}
        return Reply(tool_call=ToolCall(SCHEDULE, _arguments(tools[SCHEDULE], args)))

    def _slots(self, text: str) -> dict[str, str]:
        words = tokens(text)
        slots: dict[str, str] = {}
        number = digit_string(words)
        if number:
            is_phone = "phone" in words or (len(number) >= 7 and "account" not in words)
            slots["phone" if is_phone else "account_id"] = number
        if date := parse_date(words, self.today()):
            slots["date"] = date
        if time := parse_time(words):
            slots["time"] = time
        if name := _name(words):
            slots["name"] = name
        return slots


def _name(words: list[str]) -> str:
    for i, w in enumerate(words):
        after_intro = w == "is" and i > 0 and words[i - 1] in ("name", "this")
        if not (after_intro or w in ("for", "under")):
            continue
        cand = [x for x in words[i + 1:i + 3] if x.isalpha() and x not in _NOT_NAMES]
        if not cand or (w != "is" and cand[0] not in FIRST_NAMES):
            continue
        if len(cand) > 1 and (cand[1] in LAST_NAMES or after_intro):
            return f"{cand[0].title()} {cand[1].title()}"
        return cand[0].title()
    return ""


def _arguments(tool: Json, slots: dict[str, str]) -> Json:
    """Slots renamed to the tool schema's property names (canonical names if it lists none)."""
    params = tool.get("parameters")
    props = params.get("properties") if isinstance(params, dict) else None
    if not isinstance(props, dict) or not props:
        return dict(slots)
    out: Json = {}
    for slot, value in slots.items():
        for prop in _PROPERTY_NAMES.get(slot, (slot,)):
            if prop in props:
                out[prop] = value
                break
    return out


def _apply_tool_choice(reply: Reply, choice: str | Json, tools: dict[str, Json],
                       slots: dict[str, str]) -> Reply:
    forced = choice.get("name") if isinstance(choice, dict) else None
    if forced and forced in tools and (reply.tool_call is None or reply.tool_call.name != forced):
        return Reply(tool_call=ToolCall(str(forced), _arguments(tools[str(forced)], slots)))
    if choice == "required" and reply.tool_call is None and tools:
        name = next(iter(tools))
        return Reply(tool_call=ToolCall(name, _arguments(tools[name], slots)))
    return reply


def _capabilities(tools: dict[str, Json]) -> str:
    """What the session's tools let the agent do (nothing it does not have)."""
    can = []
    for name, tool in tools.items():
        if name == LOOKUP:
            can.append("look up a customer by phone number or account number")
        elif name == SCHEDULE:
            can.append("book an appointment")
        else:
            can.append(toolintent.describe(name, tool))
    if not can:
        return "I can chat and repeat what you say, but this session gives me no tools."
    listed = ", ".join(can[:-1]) + (" or " if len(can) > 1 else "") + can[-1]
    return f"I can {listed}. What would you like?"
