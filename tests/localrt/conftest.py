"""Fixtures: one engine (models loaded once for the whole run), and a real server per test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiohttp.test_utils import TestServer

from gateway.localrt.config import EngineConfig
from gateway.localrt.engine import Engine
from gateway.localrt.server import make_app

#: Tests stream audio faster than real time and take the audio unpaced.
FAST = EngineConfig(output_pace=0.0)

StartEngine = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    loaded = Engine(FAST)
    yield loaded
    loaded.close()


@pytest.fixture
async def start_engine(engine: Engine, aiohttp_server: Callable[..., Awaitable[TestServer]]
                       ) -> StartEngine:
    """Start the engine's app on a free local port; returns the SDK's websocket base URL."""

    async def start(config: EngineConfig = FAST) -> str:
        server = await aiohttp_server(make_app(config, engine=engine))
        return f"ws://{server.host}:{server.port}/v1"

    return start


@pytest.fixture
async def engine_url(start_engine: StartEngine) -> str:
    return await start_engine()
