"""Written transcripts -> the engine's spoken form: lower-case words, no punctuation, numbers
as the words a caller says ("Look up account 12345." -> "look up account one two three four
five", "3 p.m." -> "three p m", "10:30" -> "ten thirty", "21st" -> "twenty first").

Whisper writes what it hears the way a book would; the agent, the transcription events and the
WER bench all read the spoken form, so both recognisers produce it. Pure functions.
"""

from __future__ import annotations

import re

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORD = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
        "nine": "ninth", "twelve": "twelfth"}


def cardinal(n: int) -> str:
    """0-99 as words; larger numbers digit by digit (how callers say account numbers)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    return " ".join(_ONES[int(d)] for d in str(n))


def ordinal(n: int) -> str:
    words = cardinal(n).split()
    last = words[-1]
    if last in _ORD:
        words[-1] = _ORD[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _number(token: str) -> str:
    if len(token) >= 3 or (len(token) == 2 and token.startswith("0")):
        return " ".join(_ONES[int(d)] for d in token)  # a code, a phone number, an account
    return cardinal(int(token))


def _clock(match: re.Match[str]) -> str:
    hour, minute = int(match.group(1)), int(match.group(2))
    if minute == 0:
        return f" {cardinal(hour)} "
    tail = f"o {_ONES[minute]}" if minute < 10 else cardinal(minute)
    return f" {cardinal(hour)} {tail} "


#: Words that sound like a digit. Inside a run of digits ("four for seven two one") they are
#: the digit: nobody says "for" between digits of an account or a phone number. A run means
#: digits on both sides and a third next to one of them, so "five to three" (a time) stays.
_DIGIT_HOMOPHONES = {"for": "four", "fore": "four", "to": "two", "too": "two", "won": "one",
                     "ate": "eight"}
_DIGITS = frozenset(_ONES[:10])


def _digit_runs(words: list[str]) -> list[str]:
    out = list(words)
    def digit(j: int) -> bool:
        return 0 <= j < len(out) and out[j] in _DIGITS

    for i, word in enumerate(out):
        if word in _DIGIT_HOMOPHONES and digit(i - 1) and digit(i + 1) and \
                (digit(i - 2) or digit(i + 2)):
            out[i] = _DIGIT_HOMOPHONES[word]
    return out


def spoken(text: str) -> str:
    text = text.lower()
    text = re.sub(r"\b([ap])\.\s?m\.?", r" \1 m ", text)
    text = re.sub(r"(\d)\s*([ap])m\b", r"\1 \2 m", text)
    text = re.sub(r"\b(\d{1,2})[:.](\d\d)\b", _clock, text)
    # "at 1030" is a time said as "ten thirty", not a code
    text = re.sub(r"\bat ([1-9]|1[0-2])([0-5]\d)\b", lambda m: "at " + _clock(m), text)
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: f" {ordinal(int(m.group(1)))} ", text)
    text = text.replace("%", " percent ").replace("&", " and ").replace("-", " ")
    text = re.sub(r"(?<=\d)[,.](?=\d)", "", text)  # 555-1234 / 1,234 / 5.5.5 -> one run
    text = re.sub(r"\d+", lambda m: f" {_number(m.group(0))} ", text)
    text = re.sub(r"[^a-z' ]", " ", text)
    words = [w for w in (w.strip("'") for w in text.split()) if w]
    return " ".join(_digit_runs(words))
