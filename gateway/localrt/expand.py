"""Sentences near a recogniser hypothesis, for Whisper to score by teacher forcing: the beam
search only keeps what the decoder found likely word by word, and on voices unlike its
training data the sentence said is often nowhere in the n-best ("two time three free eight"
for "two nine three three eight"). Each out-of-domain word is replaced by the words the
domain LM (``domainlm``) expects there (by digits too inside a run of digits), and each digit
of a run is dropped or said twice (a run heard with a digit missing or doubled). Pure
functions on written text: a candidate keeps the hypothesis's spelling, case and punctuation
around what changed, so Whisper scores it the way it would have written it.
"""

from __future__ import annotations

import re

from .domainlm import DomainLm
from .textnorm import spoken

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGIT_SET = frozenset(DIGITS) | {"oh"}
_EDGE = re.compile(r"^(\W*)(.*?)([^\w']*)$")
_STOPS = ".?!,"


def _respell(word: str, new: str, sentence_start: bool) -> str:
    """``new`` in the place of the written ``word``: its surrounding punctuation kept, a
    capital at a sentence's start."""
    match = _EDGE.match(word)
    lead, _, trail = match.groups() if match else ("", word, "")
    if sentence_start or new == "i" or new.startswith("i'"):
        new = new[:1].upper() + new[1:]
    return f"{lead}{new}{trail}"


def _starts(words: list[str], i: int) -> bool:
    return i == 0 or words[i - 1][-1:] in ".?!"


def _drop(words: list[str], i: int) -> list[str]:
    """``words`` without the i-th; its closing punctuation passed to the word before."""
    out = [*words[:i], *words[i + 1:]]
    mark = words[i][len(words[i].rstrip(_STOPS)):]
    if mark and i > 0:
        out[i - 1] = words[i - 1].rstrip(_STOPS) + mark
    if i == 0 and out:
        out[0] = out[0][:1].upper() + out[0][1:]
    return out


def _double(words: list[str], i: int) -> list[str]:
    """The i-th word said twice: the copy after it, the punctuation after the copy."""
    bare = words[i].rstrip(_STOPS)
    mark = words[i][len(bare):]
    return [*words[:i], bare, bare.lower() + mark, *words[i + 1:]]


def candidates(written: str, lm: DomainLm, vocabulary: frozenset[str], k: int = 6,
               drops: bool = False) -> list[str]:
    """Written sentences one edit away from ``written``: each word outside ``vocabulary``
    (its spoken form one word) replaced by the LM's ``k`` likeliest words after the in-domain
    words before it (every digit too when the word is in a run of digits: a digit or another
    such word next to it), and each digit word of a run of two or more said twice. With
    ``drops``, each unknown word and each digit of a run also left out (measured worse:
    teacher forcing scores no end token, so a sentence cut short looks cheap). Unique,
    without ``written``, replacements first."""
    words = written.split()
    said = [spoken(w).split() for w in words]
    digit = [len(s) == 1 and s[0] in _DIGIT_SET for s in said]
    unknown = [len(s) == 1 and s[0] not in vocabulary for s in said]
    # an unknown word chained to a digit by unknown words is in the run: "two time free eight"
    near = list(digit)
    for order in (range(len(words)), range(len(words) - 1, -1, -1)):
        last = False
        for i in order:
            if unknown[i] and last:
                near[i] = True
            last = near[i]
    out: list[str] = []
    seen = {" ".join(words)}

    def add(new: list[str]) -> None:
        text = " ".join(w for w in new if w)
        if text not in seen:
            seen.add(text)
            out.append(text)

    for i in range(len(words)):
        if not unknown[i]:
            continue
        before = [w for part in said[:i] for w in part if w in vocabulary]
        options = lm.likely_next(before, k)
        if near[i]:
            options += [d for d in DIGITS if d not in options]
        for new in options:
            add([*words[:i], _respell(words[i], new, _starts(words, i)), *words[i + 1:]])
        if drops:
            add(_drop(words, i))
    for i in range(len(words)):
        if digit[i] and ((i > 0 and digit[i - 1]) or (i + 1 < len(words) and digit[i + 1])):
            if drops:
                add(_drop(words, i))
            add(_double(words, i))
    return out
