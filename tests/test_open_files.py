"""The gateway raises its open-files limit: a call holds ~8 descriptors, and Debian's default
soft limit (1024) would refuse calls with EMFILE well below ``server.max_calls``."""

from __future__ import annotations

import asyncio
import logging
import resource
import sys
from pathlib import Path

import pytest

from gateway.lifecycle import FDS_BASE, FDS_PER_CALL, raise_open_files
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import free_port, process_env
from tests.waiting import until_ready

LOW = 256


def _low_soft_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW, hard))


def _limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-files line")


async def test_serve_raises_a_low_soft_limit_to_the_hard_one() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard > LOW, "the test needs a hard limit above its low soft one"
    async with running_fake() as (_fake, url):
        port = free_port()
        env = process_env(url, port, GATEWAY_RECORDING_ENABLED="false",
                          GATEWAY_SERVER_MAX_CALLS="400")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", env=env, preexec_fn=_low_soft_limit,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            await until_ready([f"http://127.0.0.1:{port}"], proc, what="the gateway is ready")
            assert _limits(proc.pid) == (hard, hard)
        finally:
            proc.terminate()
            _, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, err.decode()[-2000:]
        # 400 calls need ~3456 descriptors: a hard limit below that is said in the log.
        if hard < FDS_BASE + FDS_PER_CALL * 400:
            assert b"open-files limit" in err


def test_a_hard_limit_too_low_for_max_calls_is_warned_about(
        caplog: pytest.LogCaptureFixture) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (LOW, hard))
        with caplog.at_level(logging.WARNING, logger="gateway.lifecycle"):
            assert raise_open_files(max_calls=10) == (hard, hard)
            assert not caplog.records
            assert raise_open_files(max_calls=hard) == (hard, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
        assert "below the" in caplog.text and f"server.max_calls = {hard}" in caplog.text
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_unlimited_limits_are_taken_as_unlimited(monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """``RLIM_INFINITY`` is -1 here: an unlimited soft limit must be neither lowered nor
    read as too low, and an unlimited hard one lifts a low soft one. (A hard limit of
    infinity cannot be set for open files on Linux, so the calls are recorded, not made.)"""
    inf = resource.RLIM_INFINITY
    limits = {"now": (inf, inf)}
    set_to: list[tuple[int, int]] = []

    def setrlimit(_which: int, value: tuple[int, int]) -> None:
        set_to.append(value)
        limits["now"] = value

    monkeypatch.setattr(resource, "getrlimit", lambda _which: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    with caplog.at_level(logging.WARNING, logger="gateway.lifecycle"):
        assert raise_open_files(max_calls=10_000) == (inf, inf)
        assert set_to == [] and not caplog.records
        limits["now"] = (1024, inf)
        assert raise_open_files(max_calls=10) == (1 << 20, inf)
        assert set_to == [(1 << 20, inf)] and not caplog.records

