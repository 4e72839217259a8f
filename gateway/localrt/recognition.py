"""What the listener and the session need from a recogniser, whichever one is configured:
pocketsphinx (``asr``) or Whisper (``whisper_asr``), chosen by ``EngineConfig.asr``."""

from __future__ import annotations

from typing import Protocol

from .asr import Samples, Transcript, Utterance


class SessionRecognizer(Protocol):
    """One session's recogniser, driven by one worker thread."""

    active: bool

    def start(self) -> None: ...

    def feed(self, samples: Samples) -> None: ...

    def peek(self) -> Transcript: ...

    def finish(self) -> Utterance: ...

    def abandon(self) -> None: ...

    def close(self) -> None: ...


class Recognition(Protocol):
    """The process-wide models."""

    def recognizer(self) -> SessionRecognizer: ...

    def finalize(self, utt: Utterance) -> Transcript: ...

    def close(self) -> None: ...


def load(kind: str, generic_decoders: int, accept_score: float,
         threads: int, beam_size: int = 3, lm_weight: float | None = None,
         preemphasis: float | None = None) -> Recognition:
    """The configured recogniser; for Whisper, ``lm_weight`` / ``preemphasis`` of None keep
    the measured defaults (``whisper.Decoding``)."""
    if kind == "whisper":
        from dataclasses import replace

        from .whisper import Decoding
        from .whisper_asr import WhisperModels

        decoding = replace(Decoding(), beam_size=beam_size, n_best=beam_size)
        if lm_weight is not None:
            decoding = replace(decoding, lm_weight=lm_weight)
        if preemphasis is not None:
            decoding = replace(decoding, preemphasis=preemphasis)
        return WhisperModels(threads, decoding)
    if kind == "pocketsphinx":
        from .asr import AsrModels
        from .phrases import domain_sentences

        return AsrModels(domain_sentences(), generic_decoders, accept_score)
    raise ValueError(f"unknown recogniser {kind!r} (whisper | pocketsphinx)")
