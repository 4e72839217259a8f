"""The WER bench's phrase sets: settings are tuned on the development set and reported on the
test set, so the two (and the decoder prompt) must not share a sentence."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.wer import BACKENDS, backend_flags
from bench.wer_corpus import DEV_IN_DOMAIN, DEV_OPEN, IN_DOMAIN, OPEN, SETS
from gateway.localrt.config import EngineConfig
from gateway.localrt.server import parse_args
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


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_a_bench_setting_is_the_same_on_the_engines_command_line(name: str) -> None:
    # the WER is measured in process, the turn latency on the engine started with flags
    _, config = parse_args(backend_flags(name))
    assert config == replace(EngineConfig(), **BACKENDS[name])
