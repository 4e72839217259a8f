"""``response.create`` instructions -> what the agent says. Instructions are followed, never
read out: ``Say "One moment."`` and ``Say exactly this and nothing else: One moment.`` quote
the words to speak; ``Say a short, friendly goodbye because the caller has gone quiet.``
describes them, and the agent says a goodbye of its own. Descriptions it does not recognise
(``Be brief.``) are style notes: the turn is answered as usual. Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: What a described utterance is about -> ways to say it (picked in turn, never twice running).
_SPEECH_ACTS: tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...] = (
    (re.compile(r"\b(hear|audio|microphone|mic)\b", re.I), "mic_check",
     ("I can't hear you. Can you hear me?", "Hello? I'm not getting any audio from you.",
      "Can you hear me? Your line seems silent.")),
    (re.compile(r"\b(still there|are you there|gone quiet\?|check in)\b", re.I), "still_there",
     ("Are you still there?", "Hello, are you still with me?", "Still there?")),
    (re.compile(r"\b(goodbye|farewell|bye|hang(?:ing)? up|end the call)\b", re.I), "goodbye",
     ("Goodbye, and thanks for calling.", "Thanks for calling. Goodbye!",
      "I'll let you go now. Goodbye.")),
    (re.compile(r"\b(one moment|hold on|wait|filler|while (?:i|you) look)\b", re.I), "hold",
     ("One moment.", "Just a second.", "Bear with me a moment.")),
    (re.compile(r"\b(greet|welcome|introduce)\b", re.I), "greeting",
     ("Hello! How can I help you today?", "Hi there, what can I do for you?",
      "Hello, how can I help?")),
    (re.compile(r"\b(apologi[sz]e|sorry)\b", re.I), "apology",
     ("Sorry about that.", "My apologies.", "Sorry for the trouble.")),
)

_QUOTED = re.compile(r"\bsay\b[^\"“”]*[\"“]([^\"”]+)[\"”]", re.I)
#: "Say exactly this and nothing else: X", "Say exactly: X", "Say: X", "Say this: X".
_VERBATIM = re.compile(r"\s*say\b(?:\s+(?:exactly|only|this|verbatim|the following|and|"
                       r"nothing|else|words?))*\s*:\s*(.+)", re.I | re.S)
_DESCRIBED = re.compile(r"\s*(?:briefly\s+|politely\s+|now\s+)?(say|ask|tell|greet|"
                        r"apologi[sz]e|let)\b", re.I)


def quoted_words(instructions: str) -> str:
    """The words an instruction quotes for speaking verbatim, or ""."""
    quoted = _QUOTED.search(instructions)
    if quoted:
        return quoted.group(1).strip()
    plain = _VERBATIM.match(instructions)
    return plain.group(1).strip() if plain else ""


def speech_act(instructions: str) -> str:
    """The kind of utterance an instruction describes ("goodbye", "still_there", ...), or ""
    when it is no request to say something (a style note)."""
    if not _DESCRIBED.match(instructions):
        return ""
    for pattern, act, _ in _SPEECH_ACTS:
        if pattern.search(instructions):
            return act
    return "other"


def variants(act: str) -> tuple[str, ...]:
    for _, name, options in _SPEECH_ACTS:
        if name == act:
            return options
    return ()


def follow(instructions: str | None, pick: Callable[[str, tuple[str, ...]], str]) -> str:
    """What to say for ``instructions`` ("" = answer the turn as usual). ``pick`` chooses
    among variants (the agent rotates them so a call never hears the same line twice)."""
    if not instructions:
        return ""
    words = quoted_words(instructions)
    if words:
        return words
    act = speech_act(instructions)
    if act in ("", "other"):
        return ""
    return pick(act, variants(act))
