"""Starting a real gateway (and a fake or local upstream) for a test."""

from __future__ import annotations

import contextlib
import gc
import os
import pathlib
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from gateway import config as config_mod
from gateway.app import make_app
from gateway.lifecycle import GC_THRESHOLDS, make_runner

API_KEY = "sk-gw-test-key"
ADMIN = "admin-test-token"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_env(upstream_url: str, port: int, **settings: str) -> dict[str, str]:
    """The environment of a gateway run as its own process (``python -m gateway serve``)."""
    return dict(os.environ, GATEWAY_API_KEYS=API_KEY, GATEWAY_TOKEN_SECRET="s",
                GATEWAY_UPSTREAM_URL=upstream_url, OPENAI_API_KEY="sk-x",
                GATEWAY_PORT=str(port), **settings)


@dataclass
class Gateway:
    base: str
    app: web.Application
    http: aiohttp.ClientSession
    recordings: pathlib.Path

    async def mint(self, session: dict[str, object] | None = None, **body: object) -> str:
        payload: dict[str, object] = dict(body)
        if session is not None:
            payload["session"] = session
        async with self.http.post(f"{self.base}/v1/realtime/client_secrets", json=payload,
                                  headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            data = await r.json()
            assert r.status == 200, data
            return str(data["value"])


@contextlib.contextmanager
def collector_as_served() -> Iterator[None]:
    """The cycle collector as ``gateway serve`` leaves it (``lifecycle.tune_gc``, when
    ``server.gc_tuned``), for a gateway inside the test process: what the process held
    before is frozen out of the collector's way and young objects are collected less often;
    as it was again afterwards (unfrozen, so the suite's garbage is still collected).
    Without it a full collection walks the whole test process (every module and leftover of
    the suite so far: ~80 ms for 3 M objects here, and often) and the loop stalls past the
    media clock's 200 ms, which drops a call's audio that a gateway process would have sent
    (seen: a 5 s tone heard 460 ms short late in a run)."""
    thresholds = gc.get_threshold()
    gc.freeze()  # no collection first (tune_gc has one): leftovers are unfrozen at the end
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@contextlib.asynccontextmanager
async def running_gateway(upstream_url: str, env: Mapping[str, str] | None = None,
                          toml: str | None = None, tmp_path: object = None
                          ) -> AsyncIterator[Gateway]:
    e = {"GATEWAY_API_KEYS": API_KEY, "GATEWAY_TOKEN_SECRET": "test-secret",
         "GATEWAY_ADMIN_TOKEN": ADMIN, "GATEWAY_UPSTREAM_URL": upstream_url,
         "OPENAI_API_KEY": "sk-upstream-secret-never-shown",
         "GATEWAY_UPSTREAM_CONNECT_TIMEOUT_S": "3"}
    rec_dir = tempfile.mkdtemp(prefix="gw-rec-")
    e["GATEWAY_RECORDINGS_DIR"] = rec_dir
    # The WebRTC datapath under test can be chosen for a whole run (`make test-aiortc`, i.e.
    # GATEWAY_MEDIA_DATAPATH=aiortc pytest ...): the same tests then cover aiortc's own RTP
    # path, the fallback to the default owned datapath (gateway/legs/datapath.py).
    if "GATEWAY_MEDIA_DATAPATH" in os.environ:
        e["GATEWAY_MEDIA_DATAPATH"] = os.environ["GATEWAY_MEDIA_DATAPATH"]
    e.update(env or {})
    path = None
    if toml is not None:
        path = pathlib.Path(tempfile.mkdtemp()) / "gateway.toml"
        path.write_text(toml)
    cfg = config_mod.load(path, e)
    app = make_app(cfg)
    runner = make_runner(app, cfg)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http:
        try:
            with collector_as_served() if cfg.server.gc_tuned else contextlib.nullcontext():
                yield Gateway(f"http://127.0.0.1:{port}", app, http, pathlib.Path(rec_dir))
        finally:
            await runner.cleanup()
            shutil.rmtree(rec_dir, ignore_errors=True)
