"""libopus, called directly (ctypes): the gateway's Opus encoder and decoder.

PyAV wraps libopus through FFmpeg, which costs more than the codec itself for 20 ms voice
frames (an ``AudioFrame`` and a ``Packet`` object per call, and FFmpeg's libopus decoder
always outputs 48 kHz, so every inbound frame was resampled afterwards). libopus decodes
straight to the gateway's 24 kHz mono and encodes from it, and it conceals loss itself:
packet loss concealment from its own model, and in-band FEC (the LBRR copy a browser puts in
the next packet when it was told about loss). Measured in BENCHMARKS.md ("Opus through
libopus"): decode 33 µs a frame against 109 µs for PyAV decode + resample, encode 60 µs
against 89 µs.

The library is the one PyAV's wheel bundles (pinned with it, already loaded in the process),
or the system's ``libopus.so.0``. Pure and synchronous: no asyncio here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
from functools import cache

import numpy as np
import numpy.typing as npt

APPLICATION_VOIP = 2048
APPLICATION_AUDIO = 2049
#: CELT only, 2.5 ms of look-ahead instead of 6.5 ms: the agent's voice reaches the caller
#: 4 ms sooner (and at the gateway's bitrate libopus would choose CELT anyway).
APPLICATION_RESTRICTED_LOWDELAY = 2051
SET_BITRATE = 4002
SET_COMPLEXITY = 4010
MAX_FRAME_MS = 120
MAX_PACKET_BYTES = 1500


class OpusError(RuntimeError):
    pass


def _candidates() -> list[str]:
    import av

    bundled = os.path.join(os.path.dirname(os.path.dirname(av.__file__)), "av.libs")
    found = sorted(glob.glob(os.path.join(bundled, "libopus*.so*")))
    system = ctypes.util.find_library("opus")
    return found + ([system] if system else [])


@cache
def _lib() -> ctypes.CDLL:
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        _declare(lib)
        return lib
    raise OpusError("libopus not found: neither PyAV's bundled copy nor libopus.so.0")


def _declare(lib: ctypes.CDLL) -> None:
    vp, i32, ip = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int
    lib.opus_decoder_create.restype = vp
    lib.opus_decoder_create.argtypes = [i32, ip, ctypes.POINTER(ip)]
    lib.opus_decode.restype = ip
    lib.opus_decode.argtypes = [vp, ctypes.c_char_p, i32, vp, ip, ip]
    lib.opus_decoder_destroy.argtypes = [vp]
    lib.opus_encoder_create.restype = vp
    lib.opus_encoder_create.argtypes = [i32, ip, ip, ctypes.POINTER(ip)]
    lib.opus_encode.restype = i32
    lib.opus_encode.argtypes = [vp, vp, ip, ctypes.c_char_p, i32]
    lib.opus_encoder_destroy.argtypes = [vp]
    lib.opus_encoder_ctl.restype = ip  # variadic: arguments are passed typed at each call
    lib.opus_strerror.restype = ctypes.c_char_p
    lib.opus_strerror.argtypes = [ip]
    lib.opus_get_version_string.restype = ctypes.c_char_p
    if hasattr(lib, "opus_packet_has_lbrr"):  # libopus >= 1.5
        lib.opus_packet_has_lbrr.restype = ip
        lib.opus_packet_has_lbrr.argtypes = [ctypes.c_char_p, i32]


def version() -> str:
    return str(_lib().opus_get_version_string().decode())


def _check(code: int, what: str) -> int:
    if code < 0:
        raise OpusError(f"{what}: {_lib().opus_strerror(code).decode()}")
    return code


class OpusDecoder:
    """Decodes Opus packets (any mode, any duration up to 120 ms) to PCM16 at ``rate``."""

    def __init__(self, rate: int = 24_000, channels: int = 1) -> None:
        lib = _lib()
        err = ctypes.c_int()
        self._lib = lib
        self.rate = rate
        self.channels = channels
        self._st = ctypes.c_void_p(lib.opus_decoder_create(rate, channels, ctypes.byref(err)))
        _check(err.value, "opus_decoder_create")
        self._max = rate * MAX_FRAME_MS // 1000
        self._buf = ctypes.create_string_buffer(self._max * channels * 2)

    def has_fec(self, packet: bytes) -> bool | None:
        """Whether ``packet`` carries an in-band FEC copy of the previous frame (None: this
        libopus cannot tell)."""
        if not hasattr(self._lib, "opus_packet_has_lbrr"):
            return None
        return bool(self._lib.opus_packet_has_lbrr(packet, len(packet)) > 0)

    def decode(self, packet: bytes) -> npt.NDArray[np.int16]:
        n = self._lib.opus_decode(self._st, packet, len(packet), self._buf, self._max, 0)
        return self._out(_check(n, "opus_decode"))

    def recover(self, next_packet: bytes | None, samples: int) -> npt.NDArray[np.int16]:
        """``samples`` of audio for a lost packet: from the in-band FEC copy carried by
        ``next_packet`` when there is one (plain concealment when it carries none), else
        libopus' loss concealment."""
        samples = max(self.rate // 400, min(samples, self._max))  # multiples of 2.5 ms
        samples -= samples % (self.rate // 400)
        if next_packet is not None:
            n = self._lib.opus_decode(self._st, next_packet, len(next_packet), self._buf,
                                      samples, 1)
        else:
            n = self._lib.opus_decode(self._st, None, 0, self._buf, samples, 0)
        return self._out(_check(n, "opus_decode (loss)"))

    def _out(self, samples: int) -> npt.NDArray[np.int16]:
        return np.frombuffer(memoryview(self._buf), np.int16, samples * self.channels).copy()

    def __del__(self) -> None:
        st = getattr(self, "_st", None)
        if st is not None and st.value:
            self._lib.opus_decoder_destroy(st)
            st.value = None


class OpusEncoder:
    """Encodes PCM16 frames (2.5-60 ms) at ``rate`` to Opus packets."""

    def __init__(self, rate: int = 24_000, channels: int = 1, *, bitrate: int = 96_000,
                 complexity: int = 0,
                 application: int = APPLICATION_RESTRICTED_LOWDELAY) -> None:
        lib = _lib()
        err = ctypes.c_int()
        self._lib = lib
        self.rate = rate
        self.channels = channels
        self._st = ctypes.c_void_p(lib.opus_encoder_create(rate, channels, application,
                                                           ctypes.byref(err)))
        _check(err.value, "opus_encoder_create")
        self._ctl(SET_BITRATE, bitrate)
        self._ctl(SET_COMPLEXITY, complexity)
        self._out = ctypes.create_string_buffer(MAX_PACKET_BYTES)

    def _ctl(self, request: int, value: int) -> None:
        _check(self._lib.opus_encoder_ctl(self._st, ctypes.c_int(request),
                                          ctypes.c_int32(value)), f"opus_encoder_ctl({request})")

    def encode(self, pcm: bytes) -> bytes:
        samples = len(pcm) // (2 * self.channels)
        n = self._lib.opus_encode(self._st, pcm, samples, self._out, MAX_PACKET_BYTES)
        return ctypes.string_at(self._out, _check(n, "opus_encode"))

    def __del__(self) -> None:
        st = getattr(self, "_st", None)
        if st is not None and st.value:
            self._lib.opus_encoder_destroy(st)
            st.value = None
