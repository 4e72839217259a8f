"""G.711 µ-law and A-law with lookup tables, bit-exact with CPython's old ``audioop``.

The encode table covers all 65,536 PCM16 inputs, so encoding is one numpy gather.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _lin2ulaw(x16: int) -> int:
    v = x16 >> 2
    mask = 0xFF if v >= 0 else 0x7F
    v = min(abs(v), 8159) + 33
    seg = next((i for i, e in enumerate(_SEG_UEND) if v <= e), 8)
    if seg == 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((v >> (seg + 1)) & 0x0F)) ^ mask


def _ulaw2lin(u: int) -> int:
    u = ~u & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return (0x84 - t) if (u & 0x80) else (t - 0x84)


def _lin2alaw(x16: int) -> int:
    v = x16 >> 3
    if v >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        v = -v - 1
    seg = next((i for i, e in enumerate(_SEG_AEND) if v <= e), 8)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (v >> 1) & 0x0F if seg < 2 else (v >> seg) & 0x0F
    return aval ^ mask


def _alaw2lin(a: int) -> int:
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t += 0x108
        t <<= seg - 1
    return t if (a & 0x80) else -t


_ALL = range(-32768, 32768)
_ULAW_ENC = np.array([_lin2ulaw(x) for x in _ALL], dtype=np.uint8)
_ULAW_DEC = np.array([_ulaw2lin(u) for u in range(256)], dtype=np.int16)
_ALAW_ENC = np.array([_lin2alaw(x) for x in _ALL], dtype=np.uint8)
_ALAW_DEC = np.array([_alaw2lin(a) for a in range(256)], dtype=np.int16)

ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def _index(pcm: bytes | npt.NDArray[np.int16]) -> npt.NDArray[np.int32]:
    samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray) else pcm
    return samples.astype(np.int32) + 32768


def ulaw_encode(pcm: bytes | npt.NDArray[np.int16]) -> bytes:
    """PCM16 LE -> µ-law, one byte a sample."""
    return _ULAW_ENC[_index(pcm)].tobytes()


def ulaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """µ-law -> PCM16 samples (native int16 array)."""
    return _ULAW_DEC[np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(pcm: bytes | npt.NDArray[np.int16]) -> bytes:
    return _ALAW_ENC[_index(pcm)].tobytes()


def alaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    return _ALAW_DEC[np.frombuffer(data, dtype=np.uint8)]
