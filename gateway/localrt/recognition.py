"""What the listener and the session need from a recogniser, whichever one is configured:
pocketsphinx (``asr``) or Whisper (``whisper_asr``), chosen by ``EngineConfig.asr``."""

from __future__ import annotations

from typing import Protocol

from .asr import Samples, Transcript, Utterance
from .config import EngineConfig


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


def load(cfg: EngineConfig) -> Recognition:
    """The configured recogniser (``EngineConfig.asr*``; Whisper's decoding:
    ``whisper.Decoding``)."""
    if cfg.asr == "whisper":
        from .whisper import Decoding
        from .whisper_asr import WhisperModels

        return WhisperModels(cfg.asr_threads, Decoding(
            beam_size=cfg.asr_beam_size, n_best=cfg.asr_beam_size,
            lm_weight=cfg.asr_lm_weight, word_bonus=cfg.asr_word_bonus,
            preemphasis=cfg.asr_preemphasis, wiener=cfg.asr_wiener, stretch=cfg.asr_stretch,
            stretch_both=True, stretch_by=cfg.asr_stretch_by, third_by=cfg.asr_third_by,
            third_low_snr=cfg.asr_third_low_snr,
            short_share=cfg.asr_short_share, expand=cfg.asr_expand,
            low_snr=cfg.asr_low_snr,
            low_floor=cfg.asr_low_floor))
    if cfg.asr == "pocketsphinx":
        from .asr import AsrModels
        from .phrases import domain_sentences

        return AsrModels(domain_sentences(), cfg.asr_generic_decoders, cfg.asr_accept_score)
    raise ValueError(f"unknown recogniser {cfg.asr!r} (whisper | pocketsphinx)")
