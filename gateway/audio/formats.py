"""The gateway's one internal audio format and the arithmetic around it."""

from __future__ import annotations

from typing import Literal

#: Internal format: PCM16 little-endian mono at 24 kHz, handled in 20 ms frames.
SAMPLE_RATE = 24_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 480
SAMPLE_BYTES = 2
FRAME_BYTES = FRAME_SAMPLES * SAMPLE_BYTES  # 960
PCM_BYTES_PER_MS = SAMPLE_RATE * SAMPLE_BYTES // 1000  # 48

#: G.711 at 8 kHz: one byte a sample.
G711_RATE = 8_000
G711_FRAME_BYTES = G711_RATE * FRAME_MS // 1000  # 160
G711_BYTES_PER_MS = 8

#: Opus over WebRTC as aiortc decodes it: s16 stereo at 48 kHz, 960 samples a channel.
OPUS_RATE = 48_000

WireFormat = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]


def bytes_per_ms(fmt: WireFormat) -> int:
    """Bytes of one millisecond of audio in a Realtime wire format."""
    return PCM_BYTES_PER_MS if fmt == "audio/pcm" else G711_BYTES_PER_MS


def duration_ms(n_bytes: int, fmt: WireFormat = "audio/pcm") -> float:
    return n_bytes / bytes_per_ms(fmt)


SILENCE_FRAME = bytes(FRAME_BYTES)
