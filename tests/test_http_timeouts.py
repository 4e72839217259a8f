"""Connections that hold the server without finishing a request (issue 23, finding 6):
idle sockets, a request head trickled byte by byte, a body that never completes, oversized
headers. Each is closed or answered in OpenAI's JSON shape, logged below error."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fake_upstream import running_fake
from tests.gateway_fixtures import API_KEY, Gateway, running_gateway

KEEPALIVE_S = 2.0


@pytest.fixture
async def gw(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.INFO)
    async with running_fake() as (_fake, url), running_gateway(url, env={
            "GATEWAY_SERVER_KEEPALIVE_TIMEOUT_S": str(KEEPALIVE_S),
            "GATEWAY_SERVER_BODY_TIMEOUT_S": "1.5"}) as g:
        yield g
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def _addr(gw: Gateway) -> tuple[str, int]:
    u = urlsplit(gw.base)
    assert u.hostname and u.port
    return u.hostname, u.port


async def _closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bytes:
    """Everything the server sends until it closes the connection (EOF)."""
    async with asyncio.timeout(within_s):
        return await reader.read()


async def test_idle_connections_are_closed(gw: Gateway) -> None:
    host, port = _addr(gw)
    conns = [await asyncio.open_connection(host, port) for _ in range(300)]
    started = time.monotonic()
    try:
        # Wait for each close (the deadline is generous: the loop may be busy).
        out = await asyncio.gather(*(_closed_by_server(r, KEEPALIVE_S * 10 + 20)
                                     for r, _ in conns))
        elapsed = time.monotonic() - started
        assert all(o == b"" for o in out)
        assert elapsed >= KEEPALIVE_S * 0.9  # not closed early either
        print(f"300 idle sockets closed by the server after {elapsed:.1f} s "
              f"(keepalive_timeout_s={KEEPALIVE_S})")
    finally:
        for _, w in conns:
            w.close()


async def test_a_trickled_request_head_is_closed(gw: Gateway) -> None:
    host, port = _addr(gw)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
        writer.write(head)
        started = time.monotonic()

        async def trickle() -> None:
            while not reader.at_eof():
                writer.write(b"a")
                await asyncio.sleep(0.2)

        dripping = asyncio.create_task(trickle())
        try:
            await _closed_by_server(reader, KEEPALIVE_S * 10 + 20)
        finally:
            dripping.cancel()
            await asyncio.gather(dripping, return_exceptions=True)
        assert time.monotonic() - started >= KEEPALIVE_S * 0.9
    finally:
        writer.close()


async def test_a_body_that_never_completes_is_408(gw: Gateway) -> None:
    host, port = _addr(gw)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"POST /v1/realtime/client_secrets HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        data = await _closed_by_server(reader, 30)
        status_line, _, rest = data.partition(b"\r\n")
        assert b" 408 " in status_line, data
        body = json.loads(rest.partition(b"\r\n\r\n")[2])
        assert body["error"]["code"] == "request_timeout"
    finally:
        writer.close()


async def test_oversized_headers_get_a_json_error(gw: Gateway, caplog: pytest.LogCaptureFixture
                                                  ) -> None:
    host, port = _addr(gw)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 +
                     b"\r\n\r\n")
        data = await _closed_by_server(reader, 30)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"431", head
    assert b"application/json" in head
    err = json.loads(body)["error"]
    assert set(err) == {"type", "code", "message", "param"}
    assert err["code"] == "request_headers_too_large"
    refused = [r for r in caplog.records if "unparsable HTTP request" in r.getMessage()]
    assert refused and all(r.levelno == logging.INFO for r in refused)
