"""How the gateway process runs: uvloop by default (plain asyncio on request), GC tuning."""

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


def test_gc_tuning_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    import gc

    from gateway.lifecycle import GC_THRESHOLDS, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert config_mod.load(None, {"GATEWAY_SERVER_GC_TUNED": "false"}).server.gc_tuned is False
