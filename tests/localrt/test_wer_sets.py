"""The WER bench's phrase sets: settings are tuned on the development set and reported on the
test set, so the two (and the decoder prompt) must not share a sentence."""

from __future__ import annotations

from bench.wer_corpus import DEV_IN_DOMAIN, DEV_OPEN, IN_DOMAIN, OPEN, SETS
from gateway.localrt.textnorm import spoken
from gateway.localrt.whisper import DOMAIN_PROMPT


def test_dev_and_test_share_no_sentence_and_the_prompt_holds_neither() -> None:
    dev, test = set(DEV_IN_DOMAIN + DEV_OPEN), set(IN_DOMAIN + OPEN)
    assert not dev & test
    assert SETS["dev"] == (DEV_IN_DOMAIN, DEV_OPEN) and SETS["test"] == (IN_DOMAIN, OPEN)
    prompt = spoken(DOMAIN_PROMPT)
    for sentence in dev | test:
        assert sentence not in prompt
    # references are already in the spoken form the bench scores in
    assert all(spoken(s) == s for s in dev)
