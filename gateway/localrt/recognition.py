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
         threads: int, beam_size: int, lm_weight: float, preemphasis: float) -> Recognition:
    """The configured recogniser (``EngineConfig.asr*``; Whisper's decoding:
    ``whisper.Decoding``)."""
    if kind == "whisper":
        from .whisper import Decoding
        from .whisper_asr import WhisperModels

        return WhisperModels(threads, Decoding(beam_size=beam_size, n_best=beam_size,
                                               lm_weight=lm_weight, preemphasis=preemphasis))
    if kind == "pocketsphinx":
        from .asr import AsrModels
        from .phrases import domain_sentences

        return AsrModels(domain_sentences(), generic_decoders, accept_score)
    raise ValueError(f"unknown recogniser {kind!r} (whisper | pocketsphinx)")
