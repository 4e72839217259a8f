"""The recogniser's own pieces around Whisper: the domain LM that rescores its n-best list,
the log-mel front-end's pre-emphasis and noise reduction, and the rescoring on real audio."""

from __future__ import annotations

import shutil
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from bench.wer_corpus import add_noise, espeak
from gateway.localrt.domainlm import DomainLm
from gateway.localrt.logmel import denoise, log_mel
from gateway.localrt.phrases import domain_sentences
from gateway.localrt.textnorm import spoken
from gateway.localrt.whisper import (
    DOMAIN_PROMPT,
    Decoding,
    WhisperModel,
    best_hypothesis,
    cut_short,
    prompt_echoes,
    rank_score,
    says_again,
    unloop,
)


def test_domain_lm_prefers_what_callers_say_and_still_scores_open_words() -> None:
    lm = DomainLm(domain_sentences())
    said = "look up account number four four seven two one"
    assert lm.logprob(said) > lm.logprob("look up account number for for seven to one")
    assert lm.logprob("book an appointment for monday at nine a m") > \
        lm.logprob("book an appointment for monday at nine iam")
    # an open sentence costs a bounded amount per word; it is never ruled out
    open_lp = lm.logprob("the weather is lovely in paris today")
    assert np.isfinite(open_lp) and open_lp >= 8 * np.log(1e-4)


@pytest.mark.parametrize(("left_out", "whole"), [
    # (spoken text, Whisper's summed log-probability) of two hypotheses of one utterance
    # of the dev set (espeak Scottish voice); the beam found both, Whisper scored the whole
    # one better, the LM scored the one with a digit left out better
    (("can you look up account number seven one four", -6.14),
     ("can you look up account number seven one one four", -5.81)),
    (("my account number is three six five two", -2.67),
     ("my account number is eight three six five two", -2.36)),
])
def test_default_ranking_does_not_favour_a_hypothesis_with_a_word_left_out(
        left_out: tuple[str, float], whole: tuple[str, float]) -> None:
    lm = DomainLm(domain_sentences())
    d = Decoding()

    def score(hyp: tuple[str, float], bonus: float) -> float:
        return rank_score(hyp[1], hyp[0], lm.logprob(hyp[0]), d.lm_weight, bonus)

    assert score(whole, d.word_bonus) > score(left_out, d.word_bonus)
    # without the per-word bonus the LM's cost of one more digit decided it the other way
    assert score(whole, 0.0) < score(left_out, 0.0)


def test_word_bonus_is_per_spoken_word() -> None:
    assert rank_score(-3.0, "one two three", -10.0, 0.5, 1.0) == pytest.approx(-3 - 5 + 3)
    assert rank_score(-3.0, "", -10.0, 0.5, 1.0) == pytest.approx(-8.0)


def test_a_hypothesis_carrying_on_with_the_prompt_is_an_echo() -> None:
    said = "look up account number four four seven two one"
    echo = f"{said} book an appointment on thursday at nine fifteen a m"
    prompt = spoken(DOMAIN_PROMPT)
    assert prompt_echoes([said, echo, said], prompt) == {1}
    # the prompt's words said on their own, or a caller's own words after a hypothesis, are
    # not echoes; nor is a continuation of under three words
    assert prompt_echoes(["book an appointment on thursday at nine fifteen a m"], prompt) == set()
    assert prompt_echoes([said, f"{said} for mary johnson"], prompt) == set()
    assert prompt_echoes([said, f"{said} for john"], prompt) == set()


def _tone(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(16_000 * seconds)) / 16_000
    return (np.sin(2 * np.pi * 300 * t) * 8000).astype(np.int16)


def test_pre_emphasis_tilts_the_spectrum_towards_high_bands() -> None:
    rng = np.random.default_rng(1)
    audio = np.concatenate((_tone(), (rng.standard_normal(16_000) * 2000).astype(np.int16)))
    flat, tilted = log_mel(audio), log_mel(audio, preemphasis=0.97)
    assert flat.shape == tilted.shape == (80, 200 + 100)
    # relative to the loudest (low) bands, the top bands gain
    assert (tilted[70:].mean() - tilted[:10].mean()) > (flat[70:].mean() - flat[:10].mean())


def test_denoise_removes_stationary_noise_and_leaves_clean_audio_alone() -> None:
    rng = np.random.default_rng(2)
    power = rng.random((100, 201)).astype(np.float32) * 0.01  # steady noise
    power[40:60, 20:30] += 5.0  # a voiced stretch
    out = denoise(power)
    assert out[:40].mean() < 0.1 * power[:40].mean()
    assert out[40:60, 20:30].mean() > 0.9 * power[40:60, 20:30].mean()
    silent = np.zeros((100, 201), dtype=np.float32)
    silent[40:60, 20:30] = 5.0
    assert np.array_equal(denoise(silent), silent)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_rescoring_does_not_change_a_clear_utterance_and_can_be_turned_off() -> None:
    text = "look up account number four four seven two one"
    audio = espeak(text, "en-us", 165)
    rescored = WhisperModel(1)
    plain = WhisperModel(1, replace(Decoding(), lm_weight=0.0, n_best=1))
    assert rescored.transcribe(audio).text == text
    assert plain.transcribe(audio).text == text
    noisy = add_noise(audio, 10.0, seed=5)
    # both decode the noisy clip to words (no crash, no empty result): the LM only re-ranks
    assert rescored.transcribe(noisy).text and plain.transcribe(noisy).text


@pytest.mark.parametrize(("heard", "kept"), [
    ("hello there hello there hello there hello there", "hello there"),
    ("book it for me book it for me book it for me please", "book it for me please"),
    ("hello there hello there", "hello there hello there"),  # twice can be meant
    ("my phone number is five five five one two", "my phone number is five five five one two"),
    ("one two one two one two", "one two one two one two"),  # digits: a number
])
def test_unloop_collapses_whispers_loops_only(heard: str, kept: str) -> None:
    assert unloop(heard) == kept


def _counting(model: WhisperModel, change_second: bool = False) -> list[int]:
    """The frame count of every audio ``model`` decodes from now on; with ``change_second``,
    the second decode's hypotheses say something else (the two decodes then disagree)."""
    frames: list[int] = []
    generate = model._generate

    def counted(features: Any, max_tokens: int, **kwargs: Any) -> Any:
        frames.append(features.shape[2])
        found, no_speech = generate(features, max_tokens, **kwargs)
        if change_second and len(frames) == 2:
            found = [(f"Hello, {text}", total, n) for text, total, n in found]
        return found, no_speech

    model._generate = counted  # type: ignore[method-assign]
    return frames


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_the_stretched_second_decode_runs_on_slower_audio_and_keeps_a_clear_utterance() -> None:
    text = "schedule an appointment for tuesday at ten thirty"
    audio = espeak(text, "en-us", 165)
    # expand=0: the decodes then read the log-mel itself (with expansion, its encoder output)
    model = WhisperModel(1, replace(Decoding(), stretch=0.85, stretch_both=True, expand=0,
                                    third_by=""))
    frames = _counting(model)
    assert model.transcribe(audio).text == text
    tail = 100  # log_mel's appended silence
    assert len(frames) == 2
    assert (frames[1] - tail) == pytest.approx((frames[0] - tail) / 0.85, abs=2)


def test_wiener_front_end_acts_on_noise_only() -> None:
    rng = np.random.default_rng(3)
    tone = _tone(2.0)
    silence = np.zeros(8000, dtype=np.int16)
    clean = np.concatenate((silence, tone, silence))
    noisy = np.clip(clean + rng.standard_normal(len(clean)) * 800, -32768, 32767
                    ).astype(np.int16)
    assert np.allclose(log_mel(clean, wiener_floor=0.5), log_mel(clean), atol=1e-3)
    quiet = log_mel(noisy, wiener_floor=0.5)[:, :40]  # the leading noise-only frames
    assert quiet.mean() < log_mel(noisy)[:, :40].mean() - 0.05  # floor: -12 dB of power, -0.15


def test_expansion_scores_sentences_the_beam_never_reached_by_teacher_forcing() -> None:
    import ctranslate2

    text = "look up account number two nine three three eight"
    audio = espeak(text, "en-us", 165)
    model = WhisperModel(1)
    d = model.decoding
    mel = log_mel(audio, preemphasis=d.preemphasis, wiener_floor=d.wiener)
    enc = model._model.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=True)
    wrong = "Look up account number two time three three eight."
    out = dict((t, s) for t, s, _ in model._expand(
        [(wrong, -6.0, 11)], [0], [(np.asarray(enc), mel.shape[-1])]))
    assert 0 < len(out) <= d.expand
    right = "Look up account number two nine three three eight."
    # the parent's beam score plus what teacher forcing finds between the two: Whisper hears
    # "nine" there, not "one"
    assert right in out and out[right] > -6.0 - 5.0
    assert out[right] > out["Look up account number two one three three eight."]
    off = WhisperModel(1, replace(Decoding(), expand=0))
    assert model.transcribe(audio).text == off.transcribe(audio).text == text


def test_a_candidate_saying_the_sentence_again_is_recognised() -> None:
    said = "book an appointment on friday at ten thirty for jane doe"
    assert says_again(f"{said} book an appointment on friday at ten thirty", [said])
    assert says_again(f"{said} {said}", [said, "book an appointment"])
    assert not says_again(f"{said} thanks bye", [said])
    assert not says_again(said, [said])
    assert not says_again("one two three one two", ["one two three"])  # two words: a number


def test_an_unknown_way_of_slowing_is_refused_when_the_model_is_made() -> None:
    with pytest.raises(ValueError, match="stretch_by 'pitch'"):
        WhisperModel(1, replace(Decoding(), stretch_by="pitch"))
    with pytest.raises(ValueError, match="third_by 'pitch'"):
        WhisperModel(1, replace(Decoding(), third_by="pitch"))


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_a_third_decode_runs_only_when_the_first_two_disagree() -> None:
    text = "look up account number four four seven two one"
    audio = espeak(text, "en-us", 165)
    base = replace(Decoding(), stretch=0.85, stretch_both=True, expand=0, third_by="wsola")
    agreeing = WhisperModel(1, base)
    frames = _counting(agreeing)
    assert agreeing.transcribe(audio).text == text
    assert len(frames) == 2  # as heard and as a tape: they agree, no third
    split = WhisperModel(1, base)
    frames = _counting(split, change_second=True)
    assert split.transcribe(audio).text == text  # the third sides with the first
    assert len(frames) == 3
    # WSOLA slows to the tape's length, at the speaker's pitch
    assert frames[2] == pytest.approx(frames[1], abs=2)
    always = WhisperModel(1, replace(base, third_always=True))
    frames = _counting(always)
    assert always.transcribe(audio).text == text and len(frames) == 3
    never = WhisperModel(1, replace(base, third_by=""))
    frames = _counting(never, change_second=True)
    never.transcribe(audio)
    assert len(frames) == 2


def test_audio_with_no_speech_is_decoded_once() -> None:
    noise = (np.random.default_rng(7).standard_normal(32_000) * 30).astype(np.int16)
    model = WhisperModel(1, replace(Decoding(), expand=0, third_always=True))
    frames = _counting(model)
    assert model.transcribe(noise).text == ""
    assert len(frames) == 1


def test_a_hypothesis_cut_short_is_not_picked_while_a_whole_one_is_left() -> None:
    lm = DomainLm(domain_sentences())
    # the phone path's Caribbean voice saying "schedule an appointment for tuesday at ten
    # thirty": the as-heard beam's three hypotheses (spoken forms, summed log-probabilities)
    said = ["hey you're an appointment for tuesday at ten", "k",
            "she knew the appointment for tuesday at ten"]
    assert cut_short(said, 0.5) == {1}
    assert cut_short(said, 0.0) == set()
    assert cut_short(["yes", "yeah"], 0.5) == set()  # a short answer is not cut short
    totals = [-13.19, -9.74, -15.63]  # the one word ranks first without the rule
    assert best_hypothesis(said, totals, lm, "", 0.3, 1.0) == 1
    assert best_hypothesis(said, totals, lm, "", 0.3, 1.0, short_share=0.5) == 0
    assert best_hypothesis(["k"], [-9.7], lm, "", 0.3, 1.0, short_share=0.5) == 0


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_only_the_third_decode_filters_noisy_audio_on_its_live_frames(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.localrt.whisper as whisper

    noisy = add_noise(espeak("look up account number four four seven two one", "en-us", 165),
                      10.0, seed=5)
    asked: list[float] = []

    def recorded(audio: Any, **kwargs: Any) -> Any:
        asked.append(kwargs["low_snr"])
        return log_mel(audio, **kwargs)

    monkeypatch.setattr(whisper, "log_mel", recorded)
    base = replace(Decoding(), expand=0, third_always=True)
    WhisperModel(1, replace(base, third_low_snr=13.0)).transcribe(noisy)
    assert asked == [0.0, 0.0, 13.0]  # as heard, tape, third
    asked.clear()
    WhisperModel(1, base).transcribe(noisy)
    assert asked == [0.0, 0.0, 0.0]  # the default: off
