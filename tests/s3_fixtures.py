"""S3 for tests: moto's real S3 server on loopback, and a fault-injecting proxy in front of it.

Test modules wrap ``moto_server`` and ``set_credentials`` in their own small fixtures.
Credentials are fixed test values set in the environment under names of our own, which is how
the gateway is configured too (``s3_access_key_env`` / ``s3_secret_key_env``).
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aiohttp
import pytest
from aiobotocore.session import get_session
from aiohttp import web
from moto.server import ThreadedMotoServer
from yarl import URL

from tests.gateway_fixtures import free_port

KEY_ENV, SECRET_ENV = "TEST_S3_KEY_ID", "TEST_S3_SECRET"
KEY_ID, SECRET = "testing-key", "testing-secret-7f3a9c"


def set_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY_ID)
    monkeypatch.setenv(SECRET_ENV, SECRET)


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 server on a free loopback port, emptied; its URL."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    # moto keeps its state per process, not per server: start every test empty
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"),
                           timeout=10).close()
    try:
        yield url
    finally:
        server.stop()


def s3_client(url: str) -> Any:
    return get_session().create_client(
        "s3", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)


def gw_env(url: str, bucket: str, **extra: str) -> dict[str, str]:
    """The gateway's S3 settings as environment variables."""
    return {"GATEWAY_RECORDING_S3_ENDPOINT_URL": url, "GATEWAY_RECORDING_S3_BUCKET": bucket,
            "GATEWAY_RECORDING_S3_PREFIX": "calls", "GATEWAY_RECORDING_S3_REGION": "us-east-1",
            "GATEWAY_RECORDING_S3_ACCESS_KEY_ENV": KEY_ENV,
            "GATEWAY_RECORDING_S3_SECRET_KEY_ENV": SECRET_ENV,
            "GATEWAY_RECORDING_S3_MAX_ATTEMPTS": "2", "GATEWAY_RECORDING_S3_BACKOFF_S": "0.05",
            **extra}


#: Headers that belong to one hop (or that aiohttp sets itself from the body).
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "expect", "host",
        "content-encoding", "date", "server"}
Rule = Callable[[web.Request], bool]


class FaultProxy:
    """Forwards every request to ``upstream`` and records it as ``(method, path, query)``.

    ``fail(request)`` true: answer 500 InternalError instead; ``corrupt(request)`` true: flip
    one byte of the body on the way (S3 would refuse the part; moto stores it).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.fail: Rule = lambda _r: False
        self.corrupt: Rule = lambda _r: False
        self.failed = 0
        self.corrupted = 0
        self._http: aiohttp.ClientSession | None = None

    def calls(self, method: str, query_key: str) -> list[dict[str, str]]:
        return [q for m, _p, q in self.requests if m == method and query_key in q]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        body = await request.read()
        self.requests.append((request.method, request.path, dict(request.query)))
        if self.fail(request):
            self.failed += 1
            return web.Response(status=500, content_type="application/xml", body=(
                b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
                b"<Message>injected by the test proxy</Message></Error>"))
        if len(body) > 100 and self.corrupt(request):
            self.corrupted += 1
            body = body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._http.request(request.method,
                                      URL(self.upstream + request.raw_path, encoded=True),
                                      headers=headers, data=body) as up:
            data = await up.read()
            out = {k: v for k, v in up.headers.items() if k.lower() not in _HOP}
            if request.method == "HEAD":
                resp = web.StreamResponse(status=up.status, headers=out)
                resp.content_length = int(up.headers.get("Content-Length", "0"))
                return resp
            return web.Response(status=up.status, body=data, headers=out)


@asynccontextmanager
async def fault_proxy(upstream: str) -> AsyncIterator[tuple[FaultProxy, str]]:
    """A running ``FaultProxy`` and its URL."""
    proxy = FaultProxy(upstream)
    app = web.Application(client_max_size=64 << 20)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        proxy._http = http
        try:
            yield proxy, f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()
