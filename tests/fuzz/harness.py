"""What a harness is, how inputs are cut into messages, and the seeded mutator of the short runs.

A harness is ``one_input(data: bytes) -> None``: it feeds ``data`` to the code under test and
lets through only what that code's caller handles (the *expected* exceptions, e.g. aioice drops
a datagram on ``ValueError``); anything else propagates and is a crash. ``make fuzz`` runs
each one under atheris (libFuzzer, coverage-guided) from its seeds; ``make test`` runs each
for a fixed number of inputs from :func:`mutations` with a fixed seed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

OneInput = Callable[[bytes], None]


@dataclass(frozen=True)
class Harness:
    name: str
    one_input: OneInput
    seeds: tuple[bytes, ...]
    #: Source files (relative to the repo or site-packages module names) whose coverage counts.
    targets: tuple[str, ...]
    dictionary: tuple[bytes, ...] = field(default=())


def records(data: bytes, limit: int = 64) -> Iterator[bytes]:
    """Length-prefixed records: one byte of length, then that many bytes (binary packets)."""
    pos = 0
    n = 0
    while pos < len(data) and n < limit:
        size = data[pos]
        yield data[pos + 1:pos + 1 + size]
        pos += 1 + size
        n += 1


def lines(data: bytes, limit: int = 64) -> Iterator[str]:
    """Newline-separated texts (JSON messages), decoded as a browser's UTF-8 would be."""
    for i, raw in enumerate(data.split(b"\n")):
        if i >= limit:
            return
        yield raw.decode("utf-8", "replace")


def framed(*packets: bytes) -> bytes:
    return b"".join(bytes([len(p)]) + p for p in packets)


_LOOP: asyncio.AbstractEventLoop | None = None


def loop() -> asyncio.AbstractEventLoop:
    """One event loop for the harnesses that need one (timers, tasks), reused across inputs."""
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
    return _LOOP


# -- the short runs' mutator --------------------------------------------------------------

def _mutate(rng: random.Random, data: bytes, seeds: tuple[bytes, ...],
            words: tuple[bytes, ...]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(8)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[min(pos, len(b) - 1)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 3 and b:
            end = min(len(b), pos + rng.randint(1, 32))
            del b[pos:end]
        elif op == 4 and words:
            b[pos:pos] = rng.choice(words)
        elif op == 5 and seeds:
            other = rng.choice(seeds)
            cut = rng.randrange(len(other) + 1)
            b = b[:pos] + bytearray(other[cut:])
        elif op == 6 and b:
            end = min(len(b), pos + rng.randint(1, 64))
            chunk = b[pos:end]
            b[pos:pos] = chunk * rng.randint(1, 8)  # repetition: deep nesting, long runs
        else:
            b = b[:pos]
    return bytes(b[:1 << 16])


def mutations(h: Harness, n: int, seed: int = 23) -> Iterator[bytes]:
    """``n`` inputs: every seed as is, then seeds mutated, a few pure-random ones."""
    rng = random.Random(f"{h.name}:{seed}")
    yield from h.seeds[:n]
    for i in range(max(0, n - len(h.seeds))):
        if i % 16 == 0:
            yield bytes(rng.randrange(256) for _ in range(rng.randrange(512)))
        else:
            yield _mutate(rng, rng.choice(h.seeds) if h.seeds else b"", h.seeds, h.dictionary)
