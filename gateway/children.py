"""Child processes that die with the gateway.

The gateway starts helpers (the embedded local engine, ``serve --workers``' workers and
their private redis-server). A graceful stop ends them; a ``kill -9`` of the gateway does
not run that code, and an orphaned helper keeps its port, so the gateway (or a supervisor
restarting it) fails with "address already in use". On Linux the child asks the kernel to
send it SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), in the child between
fork and exec (``preexec_fn``); elsewhere nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    fn: Callable[..., int] = libc.prctl
    return fn


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get ``sig`` when this process dies (None where
    the platform cannot). Pass it to ``subprocess.Popen(preexec_fn=...)``."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), sig)

    return preexec
