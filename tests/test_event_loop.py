"""The event loop the gateway serves on: uvloop by default, plain asyncio on request."""

from __future__ import annotations

import asyncio

import pytest

from gateway import config as config_mod
from gateway.__main__ import run_loop


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.parametrize(("kind", "module"), [("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_serve_runs_on_the_configured_loop(kind: str, module: str) -> None:
    async def main() -> int:
        return 0 if (await loop_module()).startswith(module) else 1

    assert run_loop(main(), kind) == 0


def test_default_is_uvloop_and_unknown_loops_are_refused() -> None:
    assert config_mod.load(None, {}).server.event_loop == "uvloop"
    with pytest.raises(ValueError, match="server.event_loop"):
        config_mod.load(None, {"GATEWAY_SERVER_EVENT_LOOP": "trio"})
