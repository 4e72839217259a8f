"""Make aioice's and aiortc's packet parsers fail the way their callers expect.

Their callers drop a malformed packet when its parse raises ``ValueError``. The fuzzers
(``tests/fuzz``) found parsers that fail otherwise:

- SCTP: an INIT/INIT-ACK parameter of length 0 makes ``decode_params`` loop forever,
  appending to a list: one packet from a caller froze the event loop and ate the host's
  memory (every call in the process lost). Short chunk bodies raise ``struct.error``, which
  ends the DTLS transport of that call.
- STUN: an attribute of the wrong size (e.g. ICE-CONTROLLING of 4 bytes) raises
  ``struct.error`` from ``parse_message``: anyone who can reach a call's UDP port gets a
  traceback logged per datagram.
- RTP: a header extension of the wrong size (ssrc-audio-level of 2 bytes) raises
  ``struct.error``: the DTLS transport of that call ends.

:func:`install` replaces those functions (module attributes their callers look up at call
time) with versions that raise ``ValueError`` instead. Idempotent; done on import of
:mod:`gateway.legs.webrtc`. Like ``inbound.install_inbound``, a reach into aiortc's
internals, checked at start-up: it fails loudly if the names move.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from typing import Any

import aioice.stun
import aiortc.rtcsctptransport as sctp
import aiortc.rtp

_MALFORMED = (struct.error, IndexError, KeyError, TypeError, OverflowError)


def decode_params(body: bytes) -> list[tuple[int, bytes]]:
    """SCTP chunk parameters (RFC 9260 3.2.1): a length under 4 or past the end is an error."""
    params: list[tuple[int, bytes]] = []
    pos = 0
    while pos <= len(body) - 4:
        param_type, param_length = struct.unpack_from("!HH", body, pos)
        if param_length < 4 or pos + param_length > len(body):
            raise ValueError("SCTP chunk parameter length is invalid")
        params.append((param_type, body[pos + 4:pos + param_length]))
        pos += param_length + (-param_length % 4)
    return params


def _as_value_error(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def parse(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _MALFORMED as e:
            raise ValueError(f"malformed packet: {type(e).__name__}") from e

    parse.__gateway_guard__ = True  # type: ignore[attr-defined]
    return parse


def install() -> None:
    if getattr(aioice.stun.parse_message, "__gateway_guard__", False):
        return
    if not all(callable(getattr(m, n, None)) for m, n in (
            (sctp, "decode_params"), (sctp, "parse_packet"), (aioice.stun, "parse_message"))):
        raise RuntimeError("aiortc/aioice moved the parsers the gateway guards")
    sctp.decode_params = decode_params
    sctp.parse_packet = _as_value_error(sctp.parse_packet)
    aioice.stun.parse_message = _as_value_error(aioice.stun.parse_message)
    classes: tuple[Any, ...] = (aiortc.rtp.RtpPacket, aiortc.rtp.RtcpPacket)
    for cls in classes:
        cls.parse = classmethod(_as_value_error(cls.parse.__func__))
