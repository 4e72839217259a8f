"""Whisper's byte-level BPE: token strings <-> text (GPT-2 style), from the model's own
``tokenizer.json`` (vocabulary and merge ranks). Only what the recogniser needs: encoding a
short prompt and decoding a result. Pure Python, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def _byte_alphabet() -> dict[int, str]:
    """Every byte as a printable character: printable Latin-1 bytes stand for themselves,
    the rest are shifted past 255 (so a token string never holds a space or a control)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_TO_CHAR = _byte_alphabet()
_TO_BYTE = {c: b for b, c in _TO_CHAR.items()}
#: GPT-2's pre-tokenisation: contractions, letter runs, digit runs, other runs, spaces.
_PIECES = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+""")


class Bpe:
    def __init__(self, merges: Sequence[Sequence[str] | str]) -> None:
        self._rank: dict[tuple[str, str], int] = {}
        for i, merge in enumerate(merges):
            a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
            self._rank[(a, b)] = i

    def _word(self, word: str) -> list[str]:
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self._rank.get((parts[i], parts[i + 1]), 1 << 30), i)
                     for i in range(len(parts) - 1)]
            rank, at = min(pairs)
            if rank == 1 << 30:
                break
            parts[at:at + 2] = [parts[at] + parts[at + 1]]
        return parts

    def encode(self, text: str) -> list[str]:
        tokens: list[str] = []
        for piece in _PIECES.findall(text):
            tokens.extend(self._word("".join(_TO_CHAR[b] for b in piece.encode())))
        return tokens


def decode(tokens: Sequence[str]) -> str:
    """Token strings (special tokens already dropped) -> text."""
    data = bytes(_TO_BYTE[c] for tok in tokens for c in tok if c in _TO_BYTE)
    return data.decode("utf-8", errors="replace").strip()
