"""Split a native CPU profile of the server by what the time was spent in.

``perf record -e cpu-clock -F 999 -g -p PID -o perf.data -- sleep 15`` samples the server
(software clock: the shared VM has no hardware counters); this reads ``perf script`` of it
and files each sample under the library its leaf frame is in (CPython, libopus, the kernel,
numpy, libsrtp, uvloop, ...), the kernel's samples under the system call they were made in
(sendmsg, write, epoll_pwait, ...), and the samples by thread. py-spy cannot do this: without
``--native`` everything under the event loop is one opaque frame, and with it the sampler
stops the process and over-counts system calls.

    python -m bench.perf_split perf.data
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections import Counter
from collections.abc import Iterable

#: (category, substring of the leaf frame's library): the first match wins.
LIBRARIES = [
    ("CPython interpreter", "libpython"),
    ("libopus", "libopus"),
    ("numpy", "_multiarray_umath"), ("numpy", "openblas"),
    ("libsrtp (pylibsrtp, its AES-GCM)", "_binding.abi3"), ("libsrtp (pylibsrtp, its AES-GCM)",
                                                            "libcrypto"),
    ("uvloop/libuv", "uvloop"), ("uvloop/libuv", "loop.cpython"),
    ("ctypes/cffi/libffi glue", "_ctypes"), ("ctypes/cffi/libffi glue", "_cffi_backend"),
    ("ctypes/cffi/libffi glue", "libffi"),
    ("base64", "binascii"), ("json", "_json"),
    ("aiohttp WebSocket (C)", "reader_c"), ("aiohttp WebSocket (C)", "mask."),
    ("libc (malloc, memcpy, ...)", "libc.so"), ("libm", "libm.so"),
]
_FRAME = re.compile(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")
_SYSCALL = re.compile(r"__(?:x64|ia32)_sys_(\w+)|^__sys_(\w+)|^ksys_(\w+)")

Sample = tuple[str, list[tuple[str, str]]]  # (thread id, [(symbol, library), leaf first])


def samples(lines: Iterable[str]) -> Iterable[Sample]:
    """``perf script -F tid,ip,sym,dso`` output: a thread id line, then its stack."""
    tid, stack = "", []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if tid:
                yield tid, stack
            tid, stack = "", []
        elif not line[0].isspace():
            tid = line.split()[0]
        elif (m := _FRAME.match(line)) is not None:
            stack.append((m.group(1), m.group(2)))
    if tid:
        yield tid, stack


def category(stack: list[tuple[str, str]]) -> tuple[str, str | None]:
    """(category, system call for the kernel's samples)."""
    if not stack:
        return "unknown", None
    leaf = stack[0][1]
    if "kernel" in leaf:
        for sym, _ in stack:
            if (m := _SYSCALL.search(sym)) is not None:
                return "kernel", next(g for g in m.groups() if g)
        return "kernel", "interrupts, softirq, scheduler"
    for name, part in LIBRARIES:
        if part in leaf:
            return name, None
    return "other: " + leaf.rsplit("/", 1)[-1], None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf_split", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="perf.data from perf record -g")
    args = p.parse_args(argv)
    out = subprocess.run(["perf", "script", "-i", args.data, "-F", "tid,ip,sym,dso"],
                         capture_output=True, text=True, check=True).stdout
    cats: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for tid, stack in samples(out.splitlines()):
        total += 1
        threads[tid] += 1
        cat, syscall = category(stack)
        cats[cat] += 1
        if syscall:
            calls[syscall] += 1
    if not total:
        print("no samples")
        return 1
    print(f"{total} samples")
    for name, n in cats.most_common():
        print(f"{100 * n / total:6.1f} %  {name}")
    print("kernel, by system call:")
    for name, n in calls.most_common():
        print(f"{100 * n / total:6.1f} %    {name}")
    print("by thread:")
    for tid, n in threads.most_common(5):
        print(f"{100 * n / total:6.1f} %    {tid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
