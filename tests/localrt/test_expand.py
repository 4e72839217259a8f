"""Candidate expansion around a recogniser hypothesis (``localrt.expand``): what sentences it
puts in front of Whisper's teacher forcing."""

from __future__ import annotations

import pytest

from gateway.localrt.domainlm import DomainLm
from gateway.localrt.expand import candidates
from gateway.localrt.phrases import domain_sentences


@pytest.fixture(scope="module")
def lm() -> DomainLm:
    return DomainLm(domain_sentences())


def test_out_of_domain_words_in_a_digit_run_become_digits(lm: DomainLm) -> None:
    out = candidates("Look up account number two time three free eight.", lm, lm.vocabulary)
    assert "Look up account number two nine three free eight." in out
    assert "Look up account number two time three three eight." in out
    # one edit at a time, the written form kept around it
    assert "Look up account number two nine three three eight." not in out
    assert all(c.startswith("Look up account number two ") and c.endswith(" eight.")
               for c in out if "eight" in c.split()[-1])


def test_a_digit_of_a_run_said_twice_keeps_the_punctuation_at_the_end(lm: DomainLm) -> None:
    out = candidates("Can you look up account number seven one four.", lm, lm.vocabulary)
    assert "Can you look up account number seven one one four." in out
    assert "Can you look up account number seven one four four." in out
    assert "Can you look up account number seven seven one four." in out
    # nothing dropped unless asked: a sentence cut short scores cheap without an end token
    assert not any(len(c.split()) < 9 for c in out)
    dropped = candidates("Can you look up account number seven one four.", lm, lm.vocabulary,
                         drops=True)
    assert "Can you look up account number seven one." in dropped
    assert "Can you look up account number one four." in dropped


def test_replacements_follow_the_domain_lm_and_the_sentence_case(lm: DomainLm) -> None:
    out = candidates("Schedule an appointment for tomorrow at tree p.m.", lm, lm.vocabulary,
                     k=3)
    assert out == [f"Schedule an appointment for tomorrow at {w} p.m."
                   for w in lm.likely_next("schedule an appointment for tomorrow at".split(), 3)]
    start = candidates("Thunk you.", lm, lm.vocabulary, k=2)
    assert all(c[0].isupper() and c.endswith(" you.") for c in start)


def test_in_domain_sentences_and_open_words_outside_runs_stay_bounded(lm: DomainLm) -> None:
    assert candidates("What are my options?", lm, lm.vocabulary) == []
    assert candidates("Hello there.", lm, lm.vocabulary) == []
    out = candidates("The weather is lovely today.", lm, lm.vocabulary, k=4)
    assert len(out) == 2 * 4 and len(set(out)) == len(out)  # "weather", "lovely"
    assert "The weather is lovely today." not in out


def test_likely_next_is_ranked_and_never_the_end_marker(lm: DomainLm) -> None:
    after = lm.likely_next("look up account number".split(), 12)
    assert len(after) == 12 and "</s>" not in after
    assert sum(w in ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                     "nine") for w in after[:10]) >= 8
    assert lm.likely_next([], 3)[0] in lm.vocabulary
