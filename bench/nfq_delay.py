"""Delay and jitter for forwarded packets, from user space: the network emulator of bench.latency.

This machine's kernel has no ``sch_netem`` (``tc qdisc add ... netem`` answers "Specified qdisc
kind is unknown"), but it has NFQUEUE. ``bench.latency`` routes the caller's traffic through a
router namespace whose iptables ``FORWARD`` rules hand UDP to NFQUEUE queues (loss is done in
the kernel by the ``statistic`` match, before the queue); this process, run inside that
namespace, holds each queued packet for ``delay +- jitter`` ms (uniform, drawn per packet, so
packets reorder as they do under netem's ``delay 30ms 20ms``) and then accepts it.

It speaks nfnetlink_queue over a raw netlink socket (no libnetfilter_queue needed) and copies
no payload (``NFQNL_COPY_META``): a verdict needs only the packet id. Release times are kept
with ``select`` timeouts (microsecond resolution; asyncio's epoll rounds to milliseconds).
The realised delays are not what bench.latency reports: it time-stamps packets on the wire at
both ends itself. On SIGTERM it prints a JSON summary of the delays it applied.

    ip netns exec <router> python -m bench.nfq_delay --queues 1,2 --delay-ms 30 --jitter-ms 20
"""

from __future__ import annotations

import argparse
import errno
import heapq
import json
import random
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NF_ACCEPT = 1
QUEUE_MAXLEN = 4096


def attr(kind: int, data: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def message(msg: int, queue: int, body: bytes, *, seq: int = 0, ack: bool = False) -> bytes:
    """An nfnetlink_queue message: nlmsghdr + nfgenmsg (AF_UNSPEC, v0, queue) + attributes."""
    payload = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue) + body
    flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
    return struct.pack("=IHHII", 16 + len(payload), (NFNL_SUBSYS_QUEUE << 8) | msg, flags,
                       seq, 0) + payload


def verdict(queue: int, packet_id: int) -> bytes:
    return message(NFQNL_MSG_VERDICT, queue,
                   attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id)))


def packets_in(buf: bytes) -> list[tuple[int, int]]:
    """(queue, packet id) of every queued packet in one netlink read; raises on an error ack."""
    out: list[tuple[int, int]] = []
    off = 0
    while off + 16 <= len(buf):
        length, kind = struct.unpack_from("=IH", buf, off)
        if length < 16:
            break
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", buf, off + 16)
            if code != 0:
                name = errno.errorcode.get(-code)
                raise OSError(-code, f"nfnetlink_queue refused a request: {name}")
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            (queue,) = struct.unpack_from("!H", buf, off + 18)
            pid = packet_id(buf[off + 20: off + length])
            if pid is not None:
                out.append((queue, pid))
        off += (length + 3) & ~3
    return out


def packet_id(attrs: bytes) -> int | None:
    off = 0
    while off + 4 <= len(attrs):
        alen, kind = struct.unpack_from("=HH", attrs, off)
        if alen < 4:
            return None
        if kind & 0x3FFF == NFQA_PACKET_HDR:
            return int(struct.unpack_from("!I", attrs, off + 4)[0])
        off += (alen + 3) & ~3
    return None


def bind(sock: socket.socket, queue: int) -> None:
    cmd = attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, 0))
    params = attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
    maxlen = attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN))
    for seq, body in enumerate((cmd, params + maxlen), start=1):
        sock.send(message(NFQNL_MSG_CONFIG, queue, body, seq=seq, ack=True))
        packets_in(sock.recv(65536))  # the ack (raises if refused)


@dataclass
class Delayer:
    sock: socket.socket
    delay_s: float
    jitter_s: float
    rng: random.Random
    held: list[tuple[float, int, int, int]] = field(default_factory=list)  # (due, n, queue, id)
    count: int = 0
    lateness: list[float] = field(default_factory=list)
    applied: list[float] = field(default_factory=list)

    def take(self) -> None:
        """Read every packet queued so far and schedule its release."""
        while True:
            try:
                buf = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # the kernel dropped some: they are lost
                    continue
                raise
            now = time.monotonic()
            for queue, pid in packets_in(buf):
                d = max(0.0, self.delay_s + self.rng.uniform(-self.jitter_s, self.jitter_s))
                self.count += 1
                heapq.heappush(self.held, (now + d, self.count, queue, pid))
                if len(self.applied) < 100_000:
                    self.applied.append(d)

    def release(self) -> None:
        now = time.monotonic()
        while self.held and self.held[0][0] <= now:
            due, _, queue, pid = heapq.heappop(self.held)
            self.sock.send(verdict(queue, pid))
            if len(self.lateness) < 100_000:
                self.lateness.append(now - due)

    def run(self) -> None:
        while True:
            timeout = max(0.0, self.held[0][0] - time.monotonic()) if self.held else 1.0
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if ready:
                self.take()
            self.release()

    def summary(self) -> dict[str, float | int]:
        def q(xs: list[float], p: float) -> float:
            s = sorted(xs)
            return round(1000 * s[min(len(s) - 1, int(p * len(s)))], 3) if s else 0.0

        return {"packets": self.count, "delay_p50_ms": q(self.applied, 0.5),
                "delay_min_ms": q(self.applied, 0.0), "delay_max_ms": q(self.applied, 1.0),
                "release_late_p50_ms": q(self.lateness, 0.5),
                "release_late_p99_ms": q(self.lateness, 0.99)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.nfq_delay")
    p.add_argument("--queues", default="1", help="comma-separated NFQUEUE numbers")
    p.add_argument("--delay-ms", type=float, default=30.0)
    p.add_argument("--jitter-ms", type=float, default=20.0, help="uniform +- this much")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind((0, 0))
    for q in (int(x) for x in args.queues.split(",") if x):
        bind(sock, q)
    delayer = Delayer(sock, args.delay_ms / 1000, args.jitter_ms / 1000, random.Random(args.seed))

    def finish(*_: object) -> None:
        sys.stdout.write(json.dumps({"event": "nfq_delay", **delayer.summary()}) + "\n")
        sys.stdout.flush()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, finish)
    sys.stdout.write(json.dumps({"event": "ready"}) + "\n")
    sys.stdout.flush()
    delayer.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
