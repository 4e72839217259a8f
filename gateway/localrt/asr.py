"""Streaming speech recognition with pocketsphinx: a domain LM and the generic LM side by side.

Measured on the piper voice (this machine): the domain decoder (an n-gram model built at
start-up from the agent's phrases, with a dictionary cut down to its ~150 words) costs 14 ms to
build and ~0.05x real time to run; the generic en-us decoder costs 0.5 s / ~90 MB to build and
~0.08x real time with tightened beams. Both report a length-normalised path score, and the two are
comparable: in-domain speech scores higher under the domain LM (0.37-0.74 against 0.27-0.72),
out-of-domain speech higher under the generic one (0.36-0.48 against 0.25-0.38) -- on 21 test
phrases the higher score picked the right transcript every time. So each utterance streams
into the session's domain decoder and, when one is free, into a generic decoder from a small
pool, and the higher score wins at the end of the turn at no extra latency. With the pool
exhausted, a domain hypothesis scoring under ``accept_score`` is re-decoded afterwards.

pocketsphinx holds the GIL while it decodes: audio goes in <= 64 ms pieces so the event loop
is never starved for more than a few milliseconds.
"""

from __future__ import annotations

import io
import logging
import queue
import re
import shutil
import tempfile
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

#: pocketsphinx's initial cepstral mean for the en-us model (its ``cmninit``).
CMN_INIT = "40,3,-1"
#: Both second passes (fwdflat, bestpath) run when the utterance ends, so they are latency:
#: 135-280 ms per turn here with them, 25 ms without. Dropped from both decoders, the scores
#: shift alike and still pick the right model on every test phrase (margins 0.03-0.16).
_FAST_FINISH = {"fwdflat": False, "bestpath": False, "loglevel": "ERROR"}
#: Tighter search for the 130k-word generic model: 0.15x -> 0.08x real time here, the same
#: words and the same model picks on the test phrases.
_GENERIC_BEAMS = {"maxhmmpf": 2000, "maxwpf": 10, "beam": 1e-40, "wbeam": 1e-30,
                  "pbeam": 1e-40}


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    source: str  # "domain" | "generic" | "empty"
    score: float = 0.0


@dataclass(slots=True)
class Utterance:
    """A finished domain pass (and the generic one, if it ran alongside)."""

    text: str
    score: float
    audio: Samples
    generic: tuple[str, float] | None = None
    cmn: str = CMN_INIT  # the session's cepstral mean when the utterance began
    final: bool = False  # ``text`` is the recogniser's last word on ``audio`` (Whisper)


def _hyp(decoder: Any) -> tuple[str, float]:
    hyp = decoder.hyp()
    if hyp is None:
        return "", 0.0
    return str(hyp.hypstr).strip(), float(hyp.score)


def _feed(decoder: Any, samples: Samples) -> None:
    for i in range(0, len(samples), _PIECE):
        decoder.process_raw(samples[i:i + _PIECE].tobytes(), False, False)


class AsrModels:
    """Everything loaded once per process: the domain LM files and the generic decoders."""

    def __init__(self, sentences: Iterable[str], generic_decoders: int = 2,
                 accept_score: float = 0.5) -> None:
        import pocketsphinx

        self.accept_score = accept_score
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
        self._generic: queue.LifoQueue[Any] = queue.LifoQueue()
        for _ in range(max(generic_decoders, 1)):
            self._generic.put(pocketsphinx.Decoder(hmm=self.hmm, **_FAST_FINISH, **_GENERIC_BEAMS))
        log.info("domain LM: %d sentences, %d words", len(corpus), len(words))

    def recognizer(self) -> Recognizer:
        return Recognizer(self)

    def new_domain_decoder(self) -> Any:
        import pocketsphinx

        return pocketsphinx.Decoder(hmm=self.hmm, lm=self.lm_path, dict=self.dict_path,
                                    **_FAST_FINISH)

    def try_generic(self) -> Any | None:
        try:
            return self._generic.get_nowait()
        except queue.Empty:
            return None

    def release_generic(self, decoder: Any) -> None:
        self._generic.put(decoder)

    def decode_generic(self, audio: Samples, cmn: str) -> tuple[str, float]:
        """A whole utterance through a generic decoder (waits for a free one)."""
        decoder = self._generic.get()
        try:
            decoder.set_cmn(cmn)
            decoder.start_utt()
            _feed(decoder, audio)
            decoder.end_utt()
            return _hyp(decoder)
        finally:
            self._generic.put(decoder)

    def finalize(self, utt: Utterance) -> Transcript:
        """The better of the two passes (runs in a worker thread)."""
        generic = utt.generic
        if generic is None:
            if utt.text and utt.score >= self.accept_score:
                return Transcript(utt.text, "domain", utt.score)
            if len(utt.audio) < RATE // 10:
                return Transcript(utt.text, "domain" if utt.text else "empty", utt.score)
            generic = self.decode_generic(utt.audio, utt.cmn)
        return choose(utt, generic)

    def close(self) -> None:
        shutil.rmtree(self._workdir, ignore_errors=True)


def choose(utt: Utterance, generic: tuple[str, float] | None) -> Transcript:
    """The higher-scoring of the domain and generic hypotheses."""
    if generic is not None:
        text, score = generic
        log.debug("domain %r (%.3f) vs generic %r (%.3f)", utt.text, utt.score, text, score)
        if text and (not utt.text or score > utt.score):
            return Transcript(text, "generic", score)
    if utt.text:
        return Transcript(utt.text, "domain", utt.score)
    return Transcript("", "empty")


class Recognizer:
    """One session's streaming decoders. Not thread-safe: one worker thread drives it."""

    def __init__(self, models: AsrModels) -> None:
        self._models = models
        self._decoder = models.new_domain_decoder()
        self._generic: Any | None = None
        self._cmn = CMN_INIT
        self._audio: list[Samples] = []
        self._kept = 0
        self.active = False

    def start(self) -> None:
        self.abandon()
        # The cepstral mean adapts to the caller's channel from one utterance to the next.
        # It lives in the session's own domain decoder; a pooled generic decoder is handed
        # it, so it never carries another caller's channel (or depends on test order).
        self._cmn = str(self._decoder.get_cmn())
        self._decoder.start_utt()
        self._generic = self._models.try_generic()
        if self._generic is not None:
            self._generic.set_cmn(self._cmn)
            self._generic.start_utt()
        self._audio = []
        self._kept = 0
        self.active = True

    def feed(self, samples: Samples) -> None:
        if not self.active or len(samples) == 0:
            return
        for i in range(0, len(samples), _PIECE):
            piece = samples[i:i + _PIECE].tobytes()
            self._decoder.process_raw(piece, False, False)
            if self._generic is not None:
                self._generic.process_raw(piece, False, False)
        if self._kept < MAX_UTTERANCE_SAMPLES:
            self._audio.append(samples.copy())
            self._kept += len(samples)

    def peek(self) -> Transcript:
        """The best guess so far, mid-utterance (a partial hypothesis of each decoder)."""
        if not self.active:
            return Transcript("", "empty")
        text, score = _hyp(self._decoder)
        generic = _hyp(self._generic) if self._generic is not None else None
        return choose(Utterance(text, score, np.zeros(0, dtype=np.int16)), generic)

    def finish(self) -> Utterance:
        if not self.active:
            return Utterance("", 0.0, np.zeros(0, dtype=np.int16))
        self._decoder.end_utt()
        self.active = False
        text, score = _hyp(self._decoder)
        generic = None
        if self._generic is not None:
            self._generic.end_utt()
            generic = _hyp(self._generic)
            self._models.release_generic(self._generic)
            self._generic = None
        audio = np.concatenate(self._audio) if self._audio else np.zeros(0, dtype=np.int16)
        self._audio = []
        return Utterance(text, score, audio, generic, self._cmn)

    def abandon(self) -> None:
        if self.active:
            self._decoder.end_utt()
            self.active = False
        if self._generic is not None:
            self._generic.end_utt()
            self._models.release_generic(self._generic)
            self._generic = None
        self._audio = []

    def close(self) -> None:
        self.abandon()


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
