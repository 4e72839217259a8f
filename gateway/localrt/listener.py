"""One session's input side: wire audio -> 16 kHz -> silero turn edges -> streaming ASR.

Synchronous and single-threaded by design: the session drives it from its own worker thread,
one call at a time, so audio, VAD and recogniser state never race. Positions are 16 kHz
samples since the session's first audio; milliseconds are derived from them (a sample is
1/16 ms), matching OpenAI's "ms since the first audio written to the buffer".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .asr import Utterance
from .audioio import ANALYSIS_RATE, InputDecoder, Samples
from .recognition import SessionRecognizer
from .sessionconfig import TurnDetection, WireFormat
from .vad import WINDOW, Scorer, SpeechGate

SAMPLES_PER_MS = ANALYSIS_RATE // 1000
#: A commit needs at least this much audio (OpenAI's rule; less is "commit_empty").
MIN_COMMIT_MS = 100
#: Audio kept for prefix padding and for committing a buffer that was never in speech.
RING_SECONDS = 30


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    audio_start_ms: int
    audio_end_ms: int
    utterance: Utterance


@dataclass(frozen=True, slots=True)
class Pause:
    """Speech has gone quiet but the turn is not over yet: what was heard so far, so the reply
    can be prepared while the silence window runs out."""

    text: str


ListenEvent = SpeechStarted | SpeechStopped | Pause

#: A pause is reported after this much of the silence window (at most half of it).
PAUSE_MS = 200
#: Quiet audio past this point of a pause is held back from the recogniser, and fed only if
#: speech resumes: decoding the rest of the silence window (~350 ms a turn) changes nothing.
HOLD_AFTER_MS = 160


class Ring:
    """The last ``capacity`` samples, addressed by absolute position."""

    def __init__(self, capacity: int) -> None:
        self._data = np.zeros(capacity, dtype=np.int16)
        self.end = 0  # absolute position one past the newest sample

    @property
    def start(self) -> int:
        return max(0, self.end - len(self._data))

    def write(self, samples: Samples) -> None:
        cap = len(self._data)
        keep = samples[-cap:]
        at = (self.end + len(samples) - len(keep)) % cap
        first = min(len(keep), cap - at)
        self._data[at:at + first] = keep[:first]
        self._data[:len(keep) - first] = keep[first:]
        self.end += len(samples)

    def read(self, begin: int, end: int) -> Samples:
        begin = max(begin, self.start)
        if end <= begin:
            return np.zeros(0, dtype=np.int16)
        cap = len(self._data)
        idx = np.arange(begin, end) % cap
        return self._data[idx]


class Listener:
    """The recogniser reads the ring through a cursor (``_fed``): it is fed what the turn
    needs, when a push may decode. A push run in place (``decode=False``, between turns) only
    scores silero and marks a start; the next push, in the worker, starts the decoders and
    catches up, so a turn's first ~400 ms of decoding never lands on the event loop."""

    def __init__(self, scorer: Scorer, recognizer: SessionRecognizer) -> None:
        self.scorer = scorer
        self._gate = SpeechGate(scorer)
        self._rec = recognizer
        self._ring = Ring(RING_SECONDS * ANALYSIS_RATE)
        self._decoder = InputDecoder("audio/pcm")
        self._td: TurnDetection | None = None
        self._committed_upto = 0  # the input buffer is [committed_upto, position)
        self._utt_start = 0
        self._fed = 0  # the recogniser has heard the ring up to here
        self._starting = False  # a turn began; its decoders start at the next decoding push
        self._hold_from: int | None = None  # quiet audio from here is not fed (yet)
        self._paused = False  # a Pause was reported for the current quiet stretch

    @property
    def position(self) -> int:
        return self._ring.end

    @property
    def in_speech(self) -> bool:
        return self._gate.in_speech

    @property
    def light(self) -> bool:
        """Between turns a push costs only resampling and silero (~0.15 ms per 20 ms, silero
        releasing the GIL): cheaper run in place than handed to a thread."""
        return self._td is not None and not self._gate.in_speech and not self._rec.active

    def configure(self, fmt: WireFormat, td: TurnDetection | None) -> None:
        if fmt != self._decoder.format:
            self._decoder = InputDecoder(fmt)
        if (td is None) != (self._td is None):
            self._reset_turn()  # switching VAD on or off starts the buffer afresh
        self._td = td
        if td is not None:
            self._gate.configure(td.threshold, td.silence_ms)

    def push(self, wire: bytes, decode: bool = True) -> list[ListenEvent]:
        samples = self._decoder.decode(wire)
        events: list[ListenEvent] = []
        for i in range(0, len(samples), WINDOW):
            events.extend(self._push_piece(samples[i:i + WINDOW], decode))
        if decode:
            self._sync()
        return events

    def _sync(self, upto: int | None = None) -> None:
        """Start a pending turn's decoders and feed them up to ``upto`` (default: all audio
        the turn needs now, i.e. up to where a pause is being held back)."""
        if self._td is None and not self._rec.active:  # manual turns: one long utterance
            self._starting, self._fed = True, max(self._fed, self._committed_upto)
        if self._starting:
            self._rec.start()
            self._starting = False
        if not self._rec.active:
            return
        if upto is None:
            upto = self._hold_from if self._hold_from is not None else self.position
        if upto > self._fed:
            self._rec.feed(self._ring.read(self._fed, upto))
            self._fed = upto

    def _push_piece(self, piece: Samples, decode: bool) -> list[ListenEvent]:
        self._ring.write(piece)
        if self._td is None:
            return []
        events: list[ListenEvent] = []
        for edge in self._gate.push(piece):
            self._hold_from = None
            self._paused = False
            if edge.kind == "start":
                pad = self._td.prefix_padding_ms * SAMPLES_PER_MS
                self._utt_start = max(edge.sample - pad, self._committed_upto, self._ring.start)
                self._fed = self._utt_start
                self._starting = True
                events.append(SpeechStarted(self._utt_start // SAMPLES_PER_MS))
            else:
                self._sync(edge.sample + WINDOW)
                utt = self._rec.finish()
                self._committed_upto = self._fed = self.position
                events.append(SpeechStopped(self._utt_start // SAMPLES_PER_MS,
                                            edge.sample // SAMPLES_PER_MS, utt))
        quiet = self._gate.silent_ms
        if not self._gate.in_speech or quiet == 0:
            self._hold_from = None
            self._paused = False
        elif quiet >= HOLD_AFTER_MS and self._hold_from is None:
            self._hold_from = self.position
        if self._gate.in_speech and not self._paused and \
                quiet >= min(PAUSE_MS, self._td.silence_ms // 2):
            self._paused = True
            if decode:
                self._sync()
                events.append(Pause(self._rec.peek().text))
        return events

    def buffered_ms(self) -> int:
        return (self.position - self._committed_upto) // SAMPLES_PER_MS

    def commit(self) -> Utterance | None:
        """A manual commit of the whole buffer; None under 100 ms of audio."""
        if self.buffered_ms() < MIN_COMMIT_MS:
            return None
        if not self._rec.active and not self._starting:  # never in speech: the whole buffer
            self._starting, self._fed = True, self._committed_upto
        self._sync(self.position)
        utt = self._rec.finish()
        self._reset_turn()
        return utt

    def _reset_turn(self) -> None:
        self._rec.abandon()
        self._gate.reset_turn()
        self._starting = False
        self._hold_from = None
        self._paused = False
        self._committed_upto = self._fed = self.position

    def close(self) -> Scorer:
        """Let go of the decoders; the caller returns the scorer to its pool."""
        self._rec.close()
        return self.scorer

    def clear(self) -> None:
        self._reset_turn()
