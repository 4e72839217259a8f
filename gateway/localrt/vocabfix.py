"""Words the domain never uses, replaced by a domain word that sounds like them when the
domain LM then likes the sentence much better: "look up account for nine zero" is fine,
"schedule an appointment for wendsday" is not a sentence a caller says, "wednesday" is.

A word is a candidate for replacement only if the domain LM has never seen it; a replacement
must sound close (a small phonetic key, ``sound_key``, within one edit, and the spellings
close too), and the sentence's LM log-probability must rise by ``margin`` or more. Sentences
mostly made of words the domain does not know (open speech) are left alone. Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

_VOWELS = frozenset("aeiouy")
_RULES = (
    (r"^kn", "n"), (r"^wr", "r"), (r"^wh", "w"), (r"^x", "s"), (r"mb$", "m"),
    (r"ph", "f"), (r"ck", "k"), (r"dg(?=[eiy])", "j"), (r"tch", "x"), (r"sch", "sk"),
    (r"sh", "x"), (r"ch", "x"), (r"th", "0"), (r"c(?=[eiy])", "s"), (r"c", "k"),
    (r"q", "k"), (r"x", "ks"), (r"z", "s"), (r"g(?=[eiy])", "j"), (r"gh(?![aeiou])", ""),
    (r"v", "f"), (r"d$", "t"),
)


def sound_key(word: str) -> str:
    """A metaphone-like code: consonant skeleton after the common English spelling rules,
    the first letter kept when it is a vowel, other vowels dropped, doubles collapsed."""
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        return ""
    for pattern, repl in _RULES:
        w = re.sub(pattern, repl, w)
    out = [("a" if w[0] in _VOWELS else w[0])]
    for i, ch in enumerate(w[1:], 1):
        if ch in _VOWELS:
            continue
        if ch == "h" and (w[i - 1] not in _VOWELS or i + 1 >= len(w) or w[i + 1] not in _VOWELS):
            continue  # a silent h
        if ch in "wy" and (i + 1 >= len(w) or w[i + 1] not in _VOWELS):
            continue  # a vowel's glide
        if ch != out[-1]:
            out.append(ch)
    return "".join(out)


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def close(word: str, other: str) -> bool:
    """``other`` sounds like ``word``: keys within one edit (identical for short keys), and
    spellings within half the longer word's length."""
    ka, kb = sound_key(word), sound_key(other)
    limit = 0 if min(len(ka), len(kb)) <= 2 else 1
    if edit_distance(ka, kb) > limit:
        return False
    return edit_distance(word, other) * 2 <= max(len(word), len(other))


class VocabFix:
    """``fix(text)``: the sentence with its out-of-domain words replaced where that pays."""

    def __init__(self, vocabulary: Iterable[str], logprob: Callable[[str], float],
                 margin: float, max_unknown: float = 0.34) -> None:
        self._vocab = frozenset(vocabulary)
        self._logprob = logprob
        self.margin = margin
        #: at most this fraction of a sentence's words may be unknown to the domain
        self.max_unknown = max_unknown

    def fix(self, text: str) -> str:
        words = text.split()
        unknown = [i for i, w in enumerate(words) if w not in self._vocab]
        if not unknown or len(unknown) > self.max_unknown * len(words):
            return text
        base = self._logprob(text)
        for i in unknown:
            best, best_lp = None, base + self.margin
            for cand in self._vocab:
                if cand[0] != words[i][0] and sound_key(cand)[0] != sound_key(words[i])[0]:
                    continue
                if not close(words[i], cand):
                    continue
                trial = " ".join([*words[:i], cand, *words[i + 1:]])
                lp = self._logprob(trial)
                if lp >= best_lp:
                    best, best_lp = cand, lp
            if best is not None:
                words[i] = best
                base = best_lp
        return " ".join(words)
