"""Spoken English <-> values: digit strings, dates, times, names; and values -> speakable text.

The recogniser writes numbers as words ("five five five one two"); typed input uses numerals.
Both are understood. Pure functions, no I/O.
"""

from __future__ import annotations

import datetime as dt
import re

DIGITS = {"zero": 0, "oh": 0, "o": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
          "six": 6, "seven": 7, "eight": 8, "nine": 9}
TEENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
         "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50}
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
            "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12,
            "thirteenth": 13, "fourteenth": 14, "fifteenth": 15, "sixteenth": 16,
            "seventeenth": 17, "eighteenth": 18, "nineteenth": 19, "twentieth": 20,
            "thirtieth": 30}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")


def tokens(text: str) -> list[str]:
    """Lower-case words and numerals; "3pm" -> "3", "pm"; "10:30" stays one token."""
    text = text.lower().replace("a.m.", "am").replace("p.m.", "pm")
    text = re.sub(r"(\d)(am|pm)\b", r"\1 \2", text)
    return re.findall(r"\d+:\d\d|\d+(?:st|nd|rd|th)\b|\d+|[a-z]+(?:'[a-z]+)?", text)


def digit_string(words: list[str]) -> str:
    """The longest run of spoken or written digits (>= 4 of them), as a digit string.

    Only single digits count when spoken: "ten thirty" is a time, not account 1030.
    """
    best, run = "", ""
    i = 0
    while i < len(words):
        w = words[i]
        if w.isdigit():
            run += w
        elif w in DIGITS:
            run += str(DIGITS[w])
        elif w == "double" and i + 1 < len(words) and words[i + 1] in DIGITS:
            run += str(DIGITS[words[i + 1]]) * 2
            i += 1
        else:
            best = max(best, run, key=len)
            run = ""
        i += 1
    best = max(best, run, key=len)
    return best if len(best) >= 4 else ""


def _number(words: list[str], i: int) -> tuple[int, int] | None:
    """A small cardinal (0-59) at ``words[i]``: (value, words used)."""
    w = words[i] if i < len(words) else ""
    if w.isdigit() and len(w) <= 2:
        return int(w), 1
    if w in DIGITS and w not in ("o", "oh"):
        return DIGITS[w], 1
    if w in TEENS:
        return TEENS[w], 1
    if w in TENS:
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if nxt in DIGITS and DIGITS[nxt] > 0 and nxt not in ("o", "oh"):
            return TENS[w] + DIGITS[nxt], 2
        return TENS[w], 1
    return None


def parse_time(words: list[str]) -> str | None:
    """"three p m", "ten thirty", "3:15pm", "noon", "at four" -> "HH:MM" (24 h)."""
    for i, w in enumerate(words):
        if w in ("noon", "midday"):
            return "12:00"
        if re.fullmatch(r"\d{1,2}:\d\d", w):
            h, m = (int(x) for x in w.split(":"))
            return _clock(h, m, _meridiem(words, i + 1))
    for i, w in enumerate(words):
        if w != "at" and not (i > 0 and words[i - 1] == "at"):
            continue
        j = i + 1 if w == "at" else i
        got = _number(words, j)
        if got is None or not 1 <= got[0] <= 12:
            continue
        hour, used = got
        minute, k = _minutes(words, j + used)
        return _clock(hour, minute, _meridiem(words, k))
    for i in range(len(words)):  # no "at": an hour followed by a meridiem or o'clock
        got = _number(words, i)
        if got is None or not 1 <= got[0] <= 12:
            continue
        minute, k = _minutes(words, i + got[1])
        mer = _meridiem(words, k)
        if mer or (k < len(words) and words[k] == "o'clock"):
            return _clock(got[0], minute, mer)
    return None


def _minutes(words: list[str], i: int) -> tuple[int, int]:
    w = words[i] if i < len(words) else ""
    if w in ("o", "oh") and i + 1 < len(words) and words[i + 1] in DIGITS:
        return DIGITS[words[i + 1]], i + 2
    if w in TEENS or w in TENS or (w.isdigit() and len(w) == 2):
        got = _number(words, i)
        if got is not None and 10 <= got[0] <= 59:
            return got[0], i + got[1]
    return 0, i


def _meridiem(words: list[str], i: int) -> str | None:
    rest = words[i:i + 2]
    if rest[:1] in (["am"], ["pm"]):
        return rest[0]
    if rest in (["a", "m"], ["p", "m"]):
        return rest[0] + "m"
    if rest[:2] in (["in", "the"],) and i + 2 < len(words):
        return {"morning": "am", "afternoon": "pm", "evening": "pm"}.get(words[i + 2])
    return None


def _clock(hour: int, minute: int, meridiem: str | None) -> str:
    if meridiem == "pm" and hour < 12:
        hour += 12
    elif meridiem == "am" and hour == 12:
        hour = 0
    elif meridiem is None and 1 <= hour <= 7:
        hour += 12  # "at three": office hours, so the afternoon
    return f"{hour:02d}:{minute:02d}"


def parse_date(words: list[str], today: dt.date) -> str | None:
    """"today", "tomorrow", "tuesday", "march fifth", "the 5th of march" -> "YYYY-MM-DD"."""
    for i, w in enumerate(words):
        if w == "today":
            return today.isoformat()
        if w == "tomorrow":
            after = i >= 2 and words[i - 2:i] == ["day", "after"]
            return (today + dt.timedelta(days=2 if after else 1)).isoformat()
        if w in WEEKDAYS:
            ahead = (WEEKDAYS.index(w) - today.weekday()) % 7 or 7
            return (today + dt.timedelta(days=ahead)).isoformat()
        if w in MONTHS:
            day = _day(words, i + 1)
            if day is None and i >= 2 and words[i - 1] == "of":  # "the twenty fifth of march"
                compound = i >= 3 and words[i - 3] in ("twenty", "thirty")
                day = _day(words, i - 3 if compound else i - 2)
            if day:
                return _next_date(today, MONTHS.index(w) + 1, day)
    return None


def _day(words: list[str], i: int) -> int | None:
    if i < 0 or i >= len(words):
        return None
    w = words[i]
    if w == "the":
        return _day(words, i + 1)
    m = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)?", w)
    if m:
        n = int(m.group(1))
        return n if 1 <= n <= 31 else None
    if w in ("twenty", "thirty") and i + 1 < len(words) and words[i + 1] in ORDINALS:
        n = TENS[w] + ORDINALS[words[i + 1]]
        return n if n <= 31 else None
    if w in ORDINALS:
        return ORDINALS[w]
    got = _number(words, i)
    return got[0] if got and 1 <= got[0] <= 31 else None


def _next_date(today: dt.date, month: int, day: int) -> str | None:
    for year in (today.year, today.year + 1):
        try:
            d = dt.date(year, month, day)
        except ValueError:
            return None
        if d >= today:
            return d.isoformat()
    return None


# -- values -> speech --------------------------------------------------------------------------

def spell_digits(digits: str) -> str:
    """"12345" -> "1 2 3 4 5": the voice reads a digit string as one big number otherwise."""
    return " ".join(digits)


def say_date(value: str) -> str:
    try:
        d = dt.date.fromisoformat(value)
    except ValueError:
        return value
    return f"{WEEKDAYS[d.weekday()].title()}, {MONTHS[d.month - 1].title()} {d.day}"


def say_time(value: str) -> str:
    m = re.fullmatch(r"(\d{1,2}):(\d\d)(?::\d\d)?", value.strip())
    if not m:
        return value
    h, minute = int(m.group(1)), int(m.group(2))
    suffix = "PM" if h >= 12 else "AM"
    h12 = h % 12 or 12
    return f"{h12} {suffix}" if minute == 0 else f"{h12}:{minute:02d} {suffix}"
