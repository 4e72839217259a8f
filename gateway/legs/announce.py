"""Announced (1:1 NAT) addresses in the answer SDP: for every private UDP host candidate,
one host candidate per announced address on the same port, above it (mediasoup's
``announcedIp``)."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence

from aioice.candidate import candidate_priority

#: Local preference of a kept private host candidate: below every announced one.
PRIVATE_LOCAL_PREF = 32_767


def parse_announced(addresses: Iterable[str]) -> tuple[str, ...]:
    out = []
    for a in addresses:
        try:
            ip = ipaddress.ip_address(a.strip())
        except ValueError as e:
            raise ValueError(f"media.announced_addresses: {a!r} is not an IP address") from e
        out.append(str(ip))
    return tuple(out)




def _priority(component: int, local_pref: int) -> int:
    return int(candidate_priority(component, "host", local_pref))


def _foundation(address: str) -> str:
    return hashlib.sha1(f"announced|udp|{address}".encode()).hexdigest()[:16]


def _family(address: str) -> int | None:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:  # an mDNS name or garbage: never rewritten
        return None


def rewrite_answer_sdp(sdp: str, announced: Sequence[str], *, keep_private: bool = True) -> str:
    """Add, for each private UDP host candidate, one host candidate per announced address of
    the same family on the same port, ahead of and above it; keep the private one at a lower
    priority (or drop it); point ``c=`` lines at the first announced address.

    Only host candidates are touched: srflx/relay candidates already carry public addresses.
    """
    if not announced:
        return sdp
    eol = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(eol)
    trailer = lines.pop() if lines and lines[-1] == "" else None
    out: list[str] = []
    section: list[str] = []

    def flush() -> None:
        out.extend(_rewrite_section(section, announced, keep_private))
        section.clear()

    for line in lines:
        if line.startswith("m="):
            flush()
        section.append(line)
    flush()
    if trailer is not None:
        out.append(trailer)
    return eol.join(out)


def _rewrite_section(lines: list[str], announced: Sequence[str],
                     keep_private: bool) -> list[str]:
    added: list[str] = []
    seen: set[tuple[str, int, int]] = set()
    private: dict[str, str] = {}  # private address -> its first announced twin
    rewritten: list[str | None] = []
    for line in lines:
        if not line.startswith("a=candidate:"):
            rewritten.append(line)
            continue
        parts = line[len("a=candidate:"):].split()
        # foundation component transport priority address port "typ" type ...
        if (len(parts) < 8 or parts[2].lower() != "udp" or parts[6] != "typ"
                or parts[7] != "host" or _family(parts[4]) is None):
            rewritten.append(line)
            continue
        component, address, port = int(parts[1]), parts[4], int(parts[5])
        family = _family(address)
        twins = [a for a in announced if _family(a) == family and a != address]
        if not twins:
            rewritten.append(line)
            continue
        for i, pub in enumerate(twins):
            if (pub, port, component) in seen:
                continue
            seen.add((pub, port, component))
            added.append(f"a=candidate:{_foundation(pub)} {component} udp "
                         f"{_priority(component, 65535 - i)} {pub} {port} typ host")
        private.setdefault(address, twins[0])
        if keep_private:
            parts[3] = str(_priority(component, PRIVATE_LOCAL_PREF))
            rewritten.append("a=candidate:" + " ".join(parts))
        else:
            rewritten.append(None)
    if not added:
        return lines
    result: list[str] = []
    inserted = False
    for kept in rewritten:
        if kept is None:
            continue
        if not inserted and kept.startswith("a=candidate:"):
            result.extend(added)
            inserted = True
        if kept.startswith("c=IN IP"):
            kind, _, addr = kept.partition(" IP")[2].partition(" ")
            if addr in private:
                kept = f"c=IN IP{kind} {private[addr]}"
        result.append(kept)
    if not inserted:  # every candidate was private and dropped
        at = next((i for i, x in enumerate(result) if x == "a=end-of-candidates"), len(result))
        result[at:at] = added
    return result
