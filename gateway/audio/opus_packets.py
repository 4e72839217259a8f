"""Joining Opus packets (RFC 6716 §3.2): several 20 ms packets become one code-3 packet.

Used by the inbound jitter buffer to hand a backlog of frames to the decoder at once, so
latency built up while waiting for a late packet drains immediately, without dropping audio.
Pure bytes manipulation: no asyncio, no codec.
"""

from __future__ import annotations

MAX_PACKET_MS = 120


def _frames(packet: bytes) -> list[bytes] | None:
    """The compressed frames of one packet (codes 0-3), or None if it is malformed."""
    if not packet:
        return None
    code = packet[0] & 0x03
    body = packet[1:]
    if code == 0:
        return [body]
    if code == 1:
        if len(body) % 2:
            return None
        half = len(body) // 2
        return [body[:half], body[half:]]
    if code == 2:
        size, used = _read_len(body)
        if size is None or used + size > len(body):
            return None
        return [body[used:used + size], body[used + size:]]
    if not body:
        return None
    count_byte, body = body[0], body[1:]
    vbr, padded, count = count_byte & 0x80, count_byte & 0x40, count_byte & 0x3F
    if count == 0:
        return None
    if padded:
        pad = 0
        while True:
            if not body:
                return None
            b, body = body[0], body[1:]
            pad += 254 if b == 255 else b
            if b != 255:
                break
        if pad > len(body):
            return None
        body = body[: len(body) - pad]
    if not vbr:
        if len(body) % count:
            return None
        n = len(body) // count
        return [body[i * n:(i + 1) * n] for i in range(count)]
    sizes = []
    for _ in range(count - 1):
        size, used = _read_len(body)
        if size is None:
            return None
        sizes.append(size)
        body = body[used:]
    if sum(sizes) > len(body):
        return None
    out = []
    for s in sizes:
        out.append(body[:s])
        body = body[s:]
    out.append(body)
    return out


def _read_len(data: bytes) -> tuple[int | None, int]:
    if not data:
        return None, 0
    if data[0] < 252:
        return data[0], 1
    if len(data) < 2:
        return None, 0
    return data[0] + 4 * data[1], 2


def _write_len(n: int) -> bytes:
    if n < 252:
        return bytes([n])
    return bytes([252 + (n - 252) % 4, (n - 252) // 4])


def frame_ms(toc: int) -> float:
    config = toc >> 3
    if config < 12:  # SILK
        return (10, 20, 40, 60)[config % 4]
    if config < 16:  # hybrid
        return (10, 20)[config % 2]
    return (2.5, 5, 10, 20)[config % 4]  # CELT


def join(packets: list[bytes]) -> bytes | None:
    """One packet carrying all frames of ``packets``; None when they cannot share one
    (different configurations, malformed, or over 120 ms): the caller then keeps them apart."""
    if len(packets) == 1:
        return packets[0]
    if not packets or not packets[0]:
        return None
    config_and_stereo = packets[0][0] & 0xFC
    frames: list[bytes] = []
    for p in packets:
        if not p or (p[0] & 0xFC) != config_and_stereo:
            return None
        parts = _frames(p)
        if parts is None:
            return None
        frames += parts
    if len(frames) > 48 or len(frames) * frame_ms(config_and_stereo) > MAX_PACKET_MS:
        return None
    out = bytearray([config_and_stereo | 0x03, 0x80 | len(frames)])
    for frame in frames[:-1]:
        if len(frame) > 1275:
            return None
        out += _write_len(len(frame))
    for frame in frames:
        out += frame
    return bytes(out)
