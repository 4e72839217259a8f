"""Whisper behind the recogniser interface the listener drives (``start`` / ``feed`` /
``peek`` / ``finish``, then ``finalize`` in the worker).

Whisper is not a streaming decoder: it reads a whole utterance at once (~0.1 s for 3 s of
speech here). The listener already asks for the best guess 200 ms into the caller's silence
(``peek``, to prepare the reply); that is when the utterance is decoded. The listener holds
the rest of the silence window back from the recogniser, so when the turn ends the audio is
the same and the transcript from the pause is final: no decoding lands after the turn.
If speech resumed in between, the longer audio is decoded again at the end.
"""

from __future__ import annotations

import numpy as np

from .asr import MAX_UTTERANCE_SAMPLES, Samples, Transcript, Utterance
from .whisper import Decoding, Heard, WhisperModel

_EMPTY = np.zeros(0, dtype=np.int16)


class WhisperModels:
    """The process-wide model; the same interface as ``asr.AsrModels``."""

    def __init__(self, threads: int = 2, decoding: Decoding | None = None) -> None:
        self.model = WhisperModel(threads, decoding)

    def recognizer(self) -> WhisperRecognizer:
        return WhisperRecognizer(self.model)

    def finalize(self, utt: Utterance) -> Transcript:
        if not utt.final:
            heard = self.model.transcribe(utt.audio)
            utt = Utterance(heard.text, heard.score, utt.audio, final=True)
        if not utt.text:
            return Transcript("", "empty")
        return Transcript(utt.text, "whisper", utt.score)

    def close(self) -> None:
        pass


class WhisperRecognizer:
    """One session's utterance buffer. Not thread-safe: one worker thread drives it."""

    def __init__(self, model: WhisperModel) -> None:
        self._model = model
        self._audio: list[Samples] = []
        self._kept = 0
        self._heard: tuple[int, Heard] | None = None  # (samples decoded, result)
        self.active = False

    def start(self) -> None:
        self.abandon()
        self.active = True

    def feed(self, samples: Samples) -> None:
        if not self.active or len(samples) == 0 or self._kept >= MAX_UTTERANCE_SAMPLES:
            return
        self._audio.append(samples.copy())
        self._kept += len(samples)

    def _joined(self) -> Samples:
        if len(self._audio) > 1:
            self._audio = [np.concatenate(self._audio)]
        return self._audio[0] if self._audio else _EMPTY

    def peek(self) -> Transcript:
        if not self.active:
            return Transcript("", "empty")
        audio = self._joined()
        if self._heard is None or self._heard[0] != len(audio):
            self._heard = (len(audio), self._model.transcribe(audio))
        heard = self._heard[1]
        return Transcript(heard.text, "whisper" if heard.text else "empty", heard.score)

    def finish(self) -> Utterance:
        if not self.active:
            return Utterance("", 0.0, _EMPTY)
        audio = self._joined()
        heard = self._heard
        self.abandon()
        if heard is not None and heard[0] == len(audio):
            return Utterance(heard[1].text, heard[1].score, audio, final=True)
        return Utterance("", 0.0, audio)

    def abandon(self) -> None:
        self.active = False
        self._audio = []
        self._kept = 0
        self._heard = None

    def close(self) -> None:
        self.abandon()
