"""A small word trigram model of what callers say (the sentences in ``phrases``), used to
rescore Whisper's n-best list: among hypotheses the acoustic model finds about as likely, the
one a caller of this agent would say wins. Interpolated (Jelinek-Mercer) trigram, bigram and
unigram estimates with a fixed floor for words the domain never uses, so an open sentence
costs a constant per word instead of being ruled out. Pure Python, no I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

_START, _END = "<s>", "</s>"


class DomainLm:
    def __init__(self, sentences: Iterable[str], weights: tuple[float, float, float] =
                 (0.5, 0.3, 0.2), oov_prob: float = 1e-4) -> None:
        self._uni: Counter[str] = Counter()
        self._bi: Counter[tuple[str, str]] = Counter()
        self._tri: Counter[tuple[str, str, str]] = Counter()
        self._ctx1: Counter[str] = Counter()
        self._ctx2: Counter[tuple[str, str]] = Counter()
        for sentence in sentences:
            words = [_START, _START, *sentence.split(), _END]
            for i in range(2, len(words)):
                a, b, c = words[i - 2], words[i - 1], words[i]
                self._uni[c] += 1
                self._bi[(b, c)] += 1
                self._ctx1[b] += 1
                self._tri[(a, b, c)] += 1
                self._ctx2[(a, b)] += 1
        self._total = sum(self._uni.values())
        self._w3, self._w2, self._w1 = weights
        self._oov = oov_prob

    @property
    def vocabulary(self) -> frozenset[str]:
        """The words the domain uses."""
        return frozenset(self._uni) - {_END}

    def logprob(self, text: str) -> float:
        """Natural-log probability of a spoken-form sentence, end marker included."""
        words = [_START, _START, *text.split(), _END]
        total = 0.0
        for i in range(2, len(words)):
            a, b, c = words[i - 2], words[i - 1], words[i]
            p = self._w1 * self._uni[c] / self._total
            if self._ctx1[b]:
                p += self._w2 * self._bi[(b, c)] / self._ctx1[b]
            if self._ctx2[(a, b)]:
                p += self._w3 * self._tri[(a, b, c)] / self._ctx2[(a, b)]
            total += math.log(max(p, self._oov))
        return total

    def likely_next(self, before: list[str], k: int) -> list[str]:
        """The ``k`` words the model finds likeliest after ``before`` (spoken words, the last
        two count; fewer at a sentence's start), most likely first; the end marker is not a
        word and is never returned."""
        a, b = ([_START, _START, *before])[-2:]
        scores = []
        for c in self._uni:
            if c == _END:
                continue
            p = self._w1 * self._uni[c] / self._total
            if self._ctx1[b]:
                p += self._w2 * self._bi[(b, c)] / self._ctx1[b]
            if self._ctx2[(a, b)]:
                p += self._w3 * self._tri[(a, b, c)] / self._ctx2[(a, b)]
            scores.append((-p, c))
        scores.sort()
        return [c for _, c in scores[:k]]
