"""Opus for the agent's voice, encoded by the gateway instead of aiortc.

aiortc encodes every outbound frame in its thread pool, after resampling it to 48 kHz
stereo, at 96 kbit/s with libopus' highest complexity. For one mono voice that is waste
(measured in BENCHMARKS.md, "Outbound encoding"): this encoder takes the internal 24 kHz
mono frames as they are (libopus codes 24 kHz natively: no resampling), at a voice bitrate
and a lower complexity, on the event loop (about 0.1-0.2 ms, cheaper than the thread hop),
and sends one cached packet for digital silence, which is what an agent track carries most
of the time. aiortc's sender packetizes ``av.Packet`` objects without re-encoding.

Pure and synchronous: no asyncio here.
"""

from __future__ import annotations

import fractions
from typing import Any

import av

from ..audio.formats import FRAME_SAMPLES, SAMPLE_RATE

TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
#: After this many silent frames the encoder's state has decayed to silence too, so the
#: cached silent packet can stand in for it without a click when speech resumes.
SILENT_FRAMES_BEFORE_CACHE = 5


class VoiceOpusEncoder:
    def __init__(self, *, bitrate: int = 32_000, complexity: int = 5) -> None:
        self.bitrate = bitrate
        self.complexity = complexity
        self._ctx = self._open()
        self._frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        self._frame.sample_rate = SAMPLE_RATE
        self._frame.time_base = TIME_BASE
        self._silent_run = 0
        self._silence_packet = self._make_silence_packet()
        self.encoded = 0
        self.cached = 0

    def _open(self) -> av.AudioCodecContext:
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = SAMPLE_RATE
        ctx.layout = "mono"
        ctx.format = "s16"
        ctx.bit_rate = self.bitrate
        ctx.time_base = TIME_BASE
        ctx.options = {"application": "voip", "compression_level": str(self.complexity),
                       "frame_duration": "20"}
        ctx.open()
        return ctx

    def _make_silence_packet(self) -> bytes:
        ctx = self._open()
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.sample_rate = SAMPLE_RATE
        frame.planes[0].update(bytes(FRAME_SAMPLES * 2))
        data = b""
        for i in range(10):  # past the encoder's start-up: a steady-state silent packet
            frame.pts = i * FRAME_SAMPLES
            for p in ctx.encode(frame):
                data = bytes(p)
        return data

    def encode(self, pcm: bytes | None, pts: int) -> av.Packet[Any]:
        """One 20 ms packet for ``pcm`` (None: silence) with RTP time ``pts`` (24 kHz)."""
        if pcm is None:
            self._silent_run += 1
            if self._silent_run > SILENT_FRAMES_BEFORE_CACHE:
                self.cached += 1
                return self._packet(self._silence_packet, pts)
            pcm = bytes(FRAME_SAMPLES * 2)
        else:
            self._silent_run = 0
        self._frame.planes[0].update(pcm)
        self._frame.pts = pts
        self.encoded += 1
        data = b"".join(bytes(p) for p in self._ctx.encode(self._frame))
        return self._packet(data or self._silence_packet, pts)

    @staticmethod
    def _packet(data: bytes, pts: int) -> av.Packet[Any]:
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = TIME_BASE
        return packet
