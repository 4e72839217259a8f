"""The recogniser on voices the engine was not built with (espeak-ng, synthesised here): the
in-domain WER target of issue 22, through the engine's own input path (bench/wer.py's)."""

from __future__ import annotations

import shutil

import pytest

from bench.wer import transcribe
from bench.wer_corpus import IN_DOMAIN, clip, espeak, wer
from gateway.localrt.engine import Engine

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")

#: The issue's targets. Measured on these exact clips (Whisper base, beam 3, the utterance
#: decoded as heard and slowed to 0.85 as a tape is, a third time slowed by WSOLA when those
#: two disagree, the n-bests rescored together by the domain LM with a per-word bonus, a
#: hypothesis cut short never picked, candidate sentences near the best scored by teacher
#: forcing, pre-emphasis, the Wiener filter, a decoder prompt that holds none of these phrases;
#: bench/wer.py's input path). The words are deterministic: espeak-ng and the decoder on one
#: thread (the engine's default) are, and since the input resampler works in float (soxr
#: dithered int16 output at random) so is the audio. Now (round 7) / round 6 / before:
#: en-us 0.0 / 3.5 / 5.8 %, en-us+f3 4.6 / 4.6 / 10.3 %, en-us on the phone path 12.6 %,
#: en-gb-scotland on the phone path 14.9 / 14.9 / 23.0 %, en-029 on the phone path 24.1 % (21
#: errors, the most the target allows) / 27.6 / 28.7 %.
#: 87 reference words: 13 errors allowed at 15 %, 21 at 25 %. pocketsphinx, the recogniser
#: Whisper replaced as the default, gets 50-80 % here.
DOMAIN_TARGET = 0.15
PHONE_TARGET = 0.25


def _wer(engine: Engine, voice: str, condition: str) -> tuple[float, list[str]]:
    pairs: list[tuple[str, str]] = []
    for i, text in enumerate(IN_DOMAIN):
        item = clip(voice, lambda t, wpm: espeak(t, voice, wpm), condition, text, True, seed=i)
        pairs.append((text, transcribe(engine.asr, engine.vads, item)))
    return wer(pairs), [f"{r!r} -> {h!r}" for r, h in pairs if r != h]


@pytest.mark.parametrize("voice", ["en-us", "en-us+f3"])
def test_in_domain_wer_on_another_voice(engine: Engine, voice: str) -> None:
    rate, misses = _wer(engine, voice, "clean")
    assert rate <= DOMAIN_TARGET, (rate, misses)


def test_in_domain_wer_on_the_phone_path(engine: Engine) -> None:
    rate, misses = _wer(engine, "en-us", "phone")
    assert rate <= PHONE_TARGET, (rate, misses)


def test_in_domain_wer_on_the_phone_path_scottish(engine: Engine) -> None:
    rate, misses = _wer(engine, "en-gb-scotland", "phone")
    assert rate <= PHONE_TARGET, (rate, misses)


def test_in_domain_wer_on_the_phone_path_caribbean(engine: Engine) -> None:
    rate, misses = _wer(engine, "en-029", "phone")
    assert rate <= PHONE_TARGET, (rate, misses)
