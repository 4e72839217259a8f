"""The network of bench.latency: a caller namespace behind a router namespace, and wire taps.

Topology (names carry this process's pid; ``close()`` removes everything)::

    root namespace (gateway, upstream)    router ns                 caller ns
    10.77.1.1/24  lat<pid> ───veth─── r0 10.77.1.2   r1 10.77.2.1 ───veth─── eth0 10.77.2.2/24
    route 10.77.2.0/24 via 10.77.1.2      FORWARD (UDP only):                default via .2.1
                                          loss: -m statistic --mode random -j DROP
                                          delay+jitter: -j NFQUEUE -> bench.nfq_delay

The conditions are applied in the router, between the two veth pairs, so a packet tap on the
root end (``lat<pid>``, the gateway's side) and on the caller's ``eth0`` each see packets
*before* the network when they leave and *after* it when they arrive: per packet, the
gateway's own share of a one-way time is separated from the network's exactly. The kernel has
no netem (see bench/nfq_delay.py), so loss is the kernel's ``statistic`` match and delay is
a user-space NFQUEUE verdict; both hit every UDP packet between the caller and the gateway
(RTP, RTCP, STUN, DTLS and the SCTP data channel) and no TCP (HTTP signaling stays clean).
Deleting the router namespace deletes both veth pairs and, with ``lat<pid>``, the route.

:class:`WireTap` reads an interface with an ``AF_PACKET`` socket and kernel receive time
stamps (``SO_TIMESTAMPNS``, converted to ``time.monotonic()``, the clock every other process
of the bench uses), and keeps the RTP header fields (SSRC, sequence, timestamp) of every RTP
packet, in and out. SRTP leaves the RTP header in clear, so that is all a tap needs.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT_IP = "10.77.1.1"
ROUTER_ROOT_IP = "10.77.1.2"
ROUTER_CALLER_IP = "10.77.2.1"
CALLER_IP = "10.77.2.2"
PREFIX = "glat"
QUEUE_IN, QUEUE_OUT = 7701, 7702  # NFQUEUE numbers: caller->gateway, gateway->caller

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
PACKET_OUTGOING = 4


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def why_not() -> str | None:
    """Why this machine cannot build the namespaces (None: it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{PREFIX}{os.getpid()}probe"
    r = run("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip()}"
    try:
        r = run("ip", "netns", "exec", probe, "iptables", "-A", "FORWARD", "-j", "NFQUEUE",
                "--queue-num", "1", "--queue-bypass", check=False)
        if r.returncode != 0:
            return f"iptables NFQUEUE is not available: {r.stderr.strip()}"
    finally:
        run("ip", "netns", "del", probe, check=False)
    return None


def remove_stale() -> None:
    """Namespaces left by a bench process that was killed (its pid is in the name)."""
    for name in run("ip", "netns", "list", check=False).stdout.split():
        m = re.fullmatch(rf"{PREFIX}(\d+)-\w+", name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            run("ip", "netns", "del", name, check=False)


@dataclass(frozen=True, slots=True)
class Condition:
    name: str
    loss: float = 0.0  # probability per packet, each direction
    delay_ms: float = 0.0
    jitter_ms: float = 0.0  # uniform +- around delay_ms

    def describe(self) -> str:
        if not (self.loss or self.delay_ms):
            return "clean"
        return (f"{self.loss * 100:g} % loss, {self.delay_ms:g} ms +- {self.jitter_ms:g} ms "
                "delay")


@dataclass
class LatencyNet:
    python: str
    cwd: Path
    env: dict[str, str]
    pid: int = field(default_factory=os.getpid)
    delayer: subprocess.Popen[str] | None = None
    delayer_summaries: list[str] = field(default_factory=list)

    @property
    def router(self) -> str:
        return f"{PREFIX}{self.pid}-r"

    @property
    def caller(self) -> str:
        return f"{PREFIX}{self.pid}-c"

    @property
    def root_if(self) -> str:
        return f"lat{self.pid}"[:15]

    def ns(self, ns: str, *argv: str) -> None:
        run("ip", "netns", "exec", ns, *argv)

    def build(self) -> None:
        remove_stale()
        for ns in (self.router, self.caller):
            run("ip", "netns", "add", ns)
            self.ns(ns, "ip", "link", "set", "lo", "up")
            self.ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        run("ip", "link", "add", "name", self.root_if, "type", "veth", "peer", "name", "r0",
            "netns", self.router)
        run("ip", "link", "add", "name", "eth0", "netns", self.caller, "type", "veth", "peer",
            "name", "r1", "netns", self.router)
        run("ip", "addr", "add", f"{ROOT_IP}/24", "dev", self.root_if)
        run("ip", "link", "set", self.root_if, "up")
        for ns, dev, addr in ((self.router, "r0", f"{ROUTER_ROOT_IP}/24"),
                              (self.router, "r1", f"{ROUTER_CALLER_IP}/24"),
                              (self.caller, "eth0", f"{CALLER_IP}/24")):
            self.ns(ns, "ip", "addr", "add", addr, "dev", dev)
            self.ns(ns, "ip", "link", "set", dev, "up")
        self.ns(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.ns(self.router, "ip", "route", "add", "default", "via", ROOT_IP)
        self.ns(self.caller, "ip", "route", "add", "default", "via", ROUTER_CALLER_IP)
        run("ip", "route", "add", f"{CALLER_IP.rsplit('.', 1)[0]}.0/24", "via", ROUTER_ROOT_IP)

    def apply(self, cond: Condition) -> None:
        """Replace the router's rules (and delayer) with those of ``cond``."""
        self._stop_delayer()
        self.ns(self.router, "iptables", "-F", "FORWARD")
        if cond.loss > 0:
            self.ns(self.router, "iptables", "-A", "FORWARD", "-p", "udp", "-m", "statistic",
                    "--mode", "random", "--probability", f"{cond.loss:.6f}", "-j", "DROP")
        if cond.delay_ms > 0 or cond.jitter_ms > 0:
            for src, dst, queue in (("r1", "r0", QUEUE_IN), ("r0", "r1", QUEUE_OUT)):
                self.ns(self.router, "iptables", "-A", "FORWARD", "-i", src, "-o", dst, "-p",
                        "udp", "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass")
            self._start_delayer(cond)

    def _start_delayer(self, cond: Condition) -> None:
        self.delayer = subprocess.Popen(
            ["ip", "netns", "exec", self.router, self.python, "-m", "bench.nfq_delay",
             "--queues", f"{QUEUE_IN},{QUEUE_OUT}", "--delay-ms", str(cond.delay_ms),
             "--jitter-ms", str(cond.jitter_ms), "--seed", str(int(cond.loss * 1000) + 1)],
            cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, text=True)
        assert self.delayer.stdout is not None
        line = self.delayer.stdout.readline()
        if '"ready"' not in line:
            raise RuntimeError(f"bench.nfq_delay did not start: {line!r}")

    def _stop_delayer(self) -> None:
        d, self.delayer = self.delayer, None
        if d is None:
            return
        d.terminate()
        try:
            out, _ = d.communicate(timeout=5)
            self.delayer_summaries.append(out.strip())
        except subprocess.TimeoutExpired:
            d.kill()
            d.wait()

    def take_delayer_summary(self) -> str | None:
        """Stop the delayer (the rules stay; packets bypass the queue) and return its summary."""
        self._stop_delayer()
        return self.delayer_summaries[-1] if self.delayer_summaries else None

    def close(self) -> None:
        try:
            self._stop_delayer()
        finally:
            for ns in (self.caller, self.router):
                run("ip", "netns", "del", ns, check=False)


# -- wire taps ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtpSeen:
    t: float  # time.monotonic() of the kernel's time stamp
    outgoing: bool
    ssrc: int
    seq: int
    ts: int
    size: int


def parse_rtp(ip: bytes) -> tuple[int, int, int, int] | None:
    """(ssrc, seq, timestamp, payload size) of an IPv4/UDP/RTP packet; None for anything else
    (RTCP, STUN, DTLS, other protocols)."""
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
        return None
    udp = (ip[0] & 0x0F) * 4
    rtp = ip[udp + 8:]
    if len(rtp) < 12 or rtp[0] >> 6 != 2 or 192 <= rtp[1] <= 223:  # RFC 5761: RTCP
        return None
    seq, ts, ssrc = struct.unpack_from("!HII", rtp, 2)
    return ssrc, seq, ts, len(rtp) - 12


class ClockOffset:
    """``time.time() - time.monotonic()`` (kernel time stamps are CLOCK_REALTIME), read
    between two monotonic reads and kept from the tightest of five tries (a thread preempted
    between the reads would be off by the preemption), refreshed every second."""

    def __init__(self) -> None:
        self._at = -1e9
        self._value = 0.0

    def get(self) -> float:
        now = time.monotonic()
        if now - self._at > 1.0:
            best = (1e9, 0.0)
            for _ in range(5):
                a = time.monotonic()
                r = time.time()
                b = time.monotonic()
                best = min(best, (b - a, r - (a + b) / 2))
            self._at, self._value = now, best[1]
        return self._value


class WireTap:
    """RTP packets seen on one interface, in and out, with kernel time stamps (a thread)."""

    def __init__(self, iface: str, cap: int = 2_000_000) -> None:
        self.iface = iface
        self.cap = cap
        self.seen: list[RtpSeen] = []
        self.overflow = 0
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self._sock.bind((iface, ETH_P_ALL))
        self._sock.settimeout(0.2)
        self._offset = ClockOffset()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tap-{iface}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, anc, _, addr = self._sock.recvmsg(2048, 64)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            if addr[1] != ETH_P_IP:
                continue
            rtp = parse_rtp(data)
            if rtp is None:
                continue
            t = self._stamp(anc)
            if len(self.seen) >= self.cap:
                self.overflow += 1
                continue
            self.seen.append(RtpSeen(t, addr[2] == PACKET_OUTGOING, *rtp))

    def _stamp(self, anc: list[tuple[int, int, bytes]]) -> float:
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                sec, nsec = struct.unpack_from("=qq", data)
                return float(sec + nsec * 1e-9 - self._offset.get())
        return time.monotonic()

    def index(self, outgoing: bool, ssrc: int | None = None) -> dict[int, float]:
        """RTP timestamp -> first time seen, for one direction (and SSRC)."""
        out: dict[int, float] = {}
        for p in list(self.seen):
            if p.outgoing == outgoing and (ssrc is None or p.ssrc == ssrc):
                out.setdefault(p.ts, p.t)
        return out

    def ssrcs(self, outgoing: bool) -> dict[int, int]:
        """Packets per SSRC in one direction."""
        out: dict[int, int] = {}
        for p in list(self.seen):
            if p.outgoing == outgoing:
                out[p.ssrc] = out.get(p.ssrc, 0) + 1
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with contextlib.suppress(OSError):
            self._sock.close()
