"""Opus for the agent's voice, encoded by the gateway instead of aiortc.

aiortc encodes every outbound frame in its thread pool, after resampling it to 48 kHz
stereo, at 96 kbit/s with libopus' highest complexity. For one mono voice that is waste
(measured in BENCHMARKS.md, "Outbound encoding"): this encoder takes the internal 24 kHz
mono frames as they are (libopus codes 24 kHz natively: no resampling), CELT-only with
2.5 ms look-ahead, at the lowest complexity (which measured as close to the source as the
higher ones at this bitrate), with libopus called directly (:mod:`gateway.audio.opus`) on
the event loop (about 70 µs a frame of speech, cheaper than the thread hop alone), and
sends one cached packet for digital silence, which is what an agent track carries most of
the time. aiortc's sender packetizes ``av.Packet`` objects without re-encoding.

Pure and synchronous: no asyncio here.
"""

from __future__ import annotations

import fractions
from typing import Any

import av

from ..audio.formats import FRAME_SAMPLES, SAMPLE_RATE
from ..audio.opus import APPLICATION_RESTRICTED_LOWDELAY, OpusEncoder

#: Opus' RTP clock. Packets carry it so aiortc's packetizer keeps ``pts`` as it is
#: instead of rescaling it with Fraction arithmetic on every packet.
RTP_RATE = 48_000
TIME_BASE = fractions.Fraction(1, RTP_RATE)
#: After this many silent frames the encoder's state has decayed to silence too, so the
#: cached silent packet can stand in for it without a click when speech resumes.
SILENT_FRAMES_BEFORE_CACHE = 5
SILENCE = bytes(FRAME_SAMPLES * 2)


class VoiceOpusEncoder:
    def __init__(self, *, bitrate: int = 96_000, complexity: int = 0,
                 application: int = APPLICATION_RESTRICTED_LOWDELAY) -> None:
        self.bitrate = bitrate
        self.complexity = complexity
        self.application = application
        self._enc = self._new()
        self._silent_run = 0
        self._silence_packet = self._make_silence_packet()
        self.encoded = 0
        self.cached = 0

    def _make_silence_packet(self) -> bytes:
        enc = self._new()
        data = b""
        for _ in range(10):  # past the encoder's start-up: a steady-state silent packet
            data = enc.encode(SILENCE)
        return data

    def _new(self) -> OpusEncoder:
        return OpusEncoder(SAMPLE_RATE, 1, bitrate=self.bitrate, complexity=self.complexity,
                           application=self.application)

    def encode(self, pcm: bytes | None, pts: int) -> av.Packet[Any]:
        """One 20 ms packet for ``pcm`` (None: silence) with RTP time ``pts`` (24 kHz)."""
        return self._packet(self.encode_payload(pcm), pts)

    def encode_payload(self, pcm: bytes | None) -> bytes:
        """The Opus payload alone, for a datapath that packetizes itself."""
        if pcm is None:
            self._silent_run += 1
            if self._silent_run > SILENT_FRAMES_BEFORE_CACHE:
                self.cached += 1
                return self._silence_packet
            pcm = SILENCE
        else:
            self._silent_run = 0
        self.encoded += 1
        return self._enc.encode(pcm)

    @staticmethod
    def _packet(data: bytes, pts: int) -> av.Packet[Any]:
        packet = av.Packet(data)
        packet.pts = pts * (RTP_RATE // SAMPLE_RATE)
        packet.time_base = TIME_BASE
        return packet
