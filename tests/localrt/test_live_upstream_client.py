"""``gateway.upstream.live_client`` against the engine's Live endpoint: start, a spoken turn
through ``send_audio``, errors with the right ``retryable``, close."""

from __future__ import annotations

import base64

import aiohttp
import pytest

from gateway.upstream.client import UpstreamError
from gateway.upstream.live_client import LiveUpstreamConnection, live_url
from tests.oracle import validate_live_server_event

from .helpers import Event, speech
from .live_helpers import LIVE_SESSION


def test_live_url() -> None:
    assert live_url("wss://api.openai.com/v1") == "wss://api.openai.com/v1/live/sessions"
    assert live_url("ws://h:1/v1/live/sessions/") == "ws://h:1/v1/live/sessions"


async def _until(conn: LiveUpstreamConnection, type_: str) -> Event:
    while True:
        ev = await conn.recv()
        validate_live_server_event(ev)
        if ev["type"] == type_:
            return ev


async def test_start_talk_and_close(engine_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        conn = await LiveUpstreamConnection.connect_live(
            http, url=engine_url, api_key="sk-x", session=LIVE_SESSION, timeout_s=10)
        try:
            assert conn.session["status"] == "active"
            audio = speech("hello")
            for at in range(0, len(audio), 960):
                assert conn.send_audio(base64.b64encode(audio[at:at + 960]).decode())
            heard = await _until(conn, "session.input_transcript.delta")
            assert "hello" in heard["delta"]
            await _until(conn, "session.output_audio.delta")
            conn.close_session()
            closed = await _until(conn, "session.closed")
            assert closed["reason"] == "close_requested"
            with pytest.raises(UpstreamError) as exc:
                while True:
                    await conn.recv()
            assert exc.value.code == "upstream_closed"
        finally:
            await conn.close()
        assert conn.closed and not conn.send_audio("AAAA")


async def test_refused_start_is_not_retryable(engine_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(UpstreamError) as exc:
            await LiveUpstreamConnection.connect_live(
                http, url=engine_url, api_key="", timeout_s=10,
                session={**LIVE_SESSION, "voice": "cedar"})
    assert (exc.value.code, exc.value.retryable) == ("unknown_parameter", False)


async def test_unreachable_is_retryable() -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(UpstreamError) as exc:
            await LiveUpstreamConnection.connect_live(
                http, url="ws://127.0.0.1:9/v1", api_key="", session=LIVE_SESSION,
                timeout_s=5)
    assert (exc.value.code, exc.value.retryable) == ("upstream_unreachable", True)
