"""Streaming speech recognition with pocketsphinx: a domain LM first, the generic LM as fallback.

Measured on the piper voice (this machine): the domain decoder (an n-gram model built at
start-up from the agent's phrases, with a dictionary cut down to its ~100 words) costs 14 ms to
build and ~0.05x real time to run; the generic en-us decoder costs 0.5 s / 90 MB to build and
~0.15x real time. So every session streams into its own domain decoder, and only an utterance
the domain model explains badly (low posterior) is re-decoded by one shared generic decoder.
Their normalised path scores are comparable: in-domain speech scores higher under the domain
LM, out-of-domain speech higher under the generic one, so the higher score wins.

pocketsphinx holds the GIL while it decodes: audio goes in <= 64 ms pieces so the event loop
is never starved for more than a few milliseconds.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

RATE = 16_000
_PIECE = 1024  # samples per process_raw call: 64 ms of audio, a few ms of CPU
#: Audio kept per utterance for the fallback pass (older audio is not re-decoded).
MAX_UTTERANCE_SAMPLES = 30 * RATE

Samples = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    source: str  # "domain" | "generic" | "empty"
    score: float = 0.0


@dataclass(slots=True)
class Utterance:
    """A finished domain pass, waiting for the fallback decision."""

    text: str
    score: float
    prob: float
    audio: Samples


def _hyp(decoder: Any) -> tuple[str, float, float]:
    hyp = decoder.hyp()
    if hyp is None:
        return "", 0.0, 0.0
    return str(hyp.hypstr).strip(), float(hyp.score), float(hyp.prob)


def _feed(decoder: Any, samples: Samples) -> None:
    for i in range(0, len(samples), _PIECE):
        decoder.process_raw(samples[i:i + _PIECE].tobytes(), False, False)


class AsrModels:
    """Everything loaded once per process: the domain LM files and the generic decoder."""

    def __init__(self, sentences: Iterable[str], fallback_below: float) -> None:
        import pocketsphinx

        self.fallback_below = fallback_below
        model_dir = Path(pocketsphinx.get_model_path("en-us"))
        self.hmm = str(model_dir / "en-us")
        self._workdir = Path(tempfile.mkdtemp(prefix="localrt-asr-"))
        pron = _load_dictionary(model_dir / "cmudict-en-us.dict")
        corpus, words = _normalise_corpus(sentences, pron)
        self.vocabulary = frozenset(words)
        self.lm_path = str(self._workdir / "domain.arpa")
        self.dict_path = str(self._workdir / "domain.dict")
        _write_arpa(corpus, self.lm_path)
        with open(self.dict_path, "w", encoding="utf-8") as f:
            for word in sorted(words):
                f.writelines(pron[word])
        self._generic = pocketsphinx.Decoder(hmm=self.hmm, loglevel="ERROR")
        self._generic_lock = threading.Lock()
        log.info("domain LM: %d sentences, %d words", len(corpus), len(words))

    def recognizer(self) -> Recognizer:
        return Recognizer(self)

    def new_domain_decoder(self) -> Any:
        import pocketsphinx

        return pocketsphinx.Decoder(hmm=self.hmm, lm=self.lm_path, dict=self.dict_path,
                                    loglevel="ERROR")

    def decode_generic(self, audio: Samples) -> tuple[str, float, float]:
        with self._generic_lock:
            self._generic.start_utt()
            _feed(self._generic, audio)
            self._generic.end_utt()
            return _hyp(self._generic)

    def finalize(self, utt: Utterance) -> Transcript:
        """The fallback decision for a finished domain pass (runs in a worker thread)."""
        if utt.text and utt.prob >= self.fallback_below:
            return Transcript(utt.text, "domain", utt.score)
        if len(utt.audio) < RATE // 10:
            return Transcript(utt.text, "domain" if utt.text else "empty", utt.score)
        text, score, _ = self.decode_generic(utt.audio)
        log.debug("fallback: domain %r (%.3f, p=%.3f) vs generic %r (%.3f)",
                  utt.text, utt.score, utt.prob, text, score)
        if text and (not utt.text or score > utt.score):
            return Transcript(text, "generic", score)
        if utt.text:
            return Transcript(utt.text, "domain", utt.score)
        return Transcript("", "empty")

    def close(self) -> None:
        shutil.rmtree(self._workdir, ignore_errors=True)


class Recognizer:
    """One session's streaming domain decoder. Not thread-safe: one worker thread drives it."""

    def __init__(self, models: AsrModels) -> None:
        self._models = models
        self._decoder = models.new_domain_decoder()
        self._audio: list[Samples] = []
        self._kept = 0
        self.active = False

    def start(self) -> None:
        if self.active:
            self._decoder.end_utt()
        self._decoder.start_utt()
        self._audio = []
        self._kept = 0
        self.active = True

    def feed(self, samples: Samples) -> None:
        if not self.active or len(samples) == 0:
            return
        _feed(self._decoder, samples)
        if self._kept < MAX_UTTERANCE_SAMPLES:
            self._audio.append(samples.copy())
            self._kept += len(samples)

    def partial(self) -> str:
        return _hyp(self._decoder)[0] if self.active else ""

    def finish(self) -> Utterance:
        if not self.active:
            return Utterance("", 0.0, 0.0, np.zeros(0, dtype=np.int16))
        self._decoder.end_utt()
        self.active = False
        text, score, prob = _hyp(self._decoder)
        audio = np.concatenate(self._audio) if self._audio else np.zeros(0, dtype=np.int16)
        self._audio = []
        return Utterance(text, score, prob, audio)

    def abandon(self) -> None:
        if self.active:
            self._decoder.end_utt()
            self.active = False
        self._audio = []


# -- building the domain model -----------------------------------------------------------------

def _load_dictionary(path: Path) -> dict[str, list[str]]:
    pron: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            word = line.split(" ", 1)[0]
            pron.setdefault(re.sub(r"\(\d+\)$", "", word), []).append(line)
    return pron


def _normalise_corpus(sentences: Iterable[str],
                      pron: dict[str, list[str]]) -> tuple[list[str], set[str]]:
    corpus: list[str] = []
    words: set[str] = set()
    dropped: set[str] = set()
    for sentence in sentences:
        tokens = re.sub(r"[^a-z' ]", " ", sentence.lower()).split()
        kept = [t for t in tokens if t in pron]
        dropped.update(t for t in tokens if t not in pron)
        if kept:
            corpus.append(" ".join(kept))
            words.update(kept)
    if dropped:
        log.warning("domain LM: words missing from the dictionary: %s", sorted(dropped))
    return corpus, words


def _write_arpa(corpus: list[str], path: str) -> None:
    from pocketsphinx.lm import ArpaBoLM

    lm = ArpaBoLM(text="\n".join(corpus), add_start=True)
    lm.compute()
    buf = io.StringIO()
    lm.write(buf)
    Path(path).write_text(buf.getvalue(), encoding="utf-8")
