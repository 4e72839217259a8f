"""/admin/recordings over a real aiohttp server (pytest-aiohttp's ``aiohttp_client``)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from gateway.api.recordings import RECORDINGS_ROOT, add_routes
from gateway.recording import CallRecorder, RecordingStore

from .conftest import ORDER

TOKEN = "adm_" + "x" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
async def client(root: Path, aiohttp_client: MakeClient) -> Client:
    app = web.Application()
    add_routes(app, root=root, admin_token=TOKEN)
    assert app[RECORDINGS_ROOT] == root
    return await aiohttp_client(app)


async def _json(resp: Any, status: int) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


def _error(body: Any) -> dict[str, Any]:
    err: dict[str, Any] = body["error"]
    assert set(err) == {"type", "code", "message", "param"}
    return err


async def test_list_filter_and_paginate(client: Client) -> None:
    body = await _json(await client.get("/admin/recordings", headers=AUTH), 200)
    assert body["object"] == "list" and [d["id"] for d in body["data"]] == ORDER
    assert body["has_more"] is False and body["next_cursor"] is None
    assert body["data"][0]["object"] == "recording"

    q = {"caller": "+15550000001"}
    body = await _json(await client.get("/admin/recordings", params=q, headers=AUTH), 200)
    assert [d["id"] for d in body["data"]] == ["rtc_d1", "rtc_b1", "rtc_a1"]
    # a '+' the client forgot to encode arrives as a space and still matches
    raw = URL("/admin/recordings?caller=+15550000001", encoded=True)
    body = await _json(await client.get(raw, headers=AUTH), 200)
    assert len(body["data"]) == 3

    q = {"agent": "support", "from": "2025-03-01T12:00:00Z", "to": "1741219200"}  # 03-06
    body = await _json(await client.get("/admin/recordings", params=q, headers=AUTH), 200)
    assert [d["id"] for d in body["data"]] == ["rtc_c1", "rtc_b1", "rtc_a2"]

    seen: list[str] = []
    params: dict[str, str] = {"limit": "4"}
    while True:
        body = await _json(await client.get("/admin/recordings", params=params,
                                            headers=AUTH), 200)
        seen += [d["id"] for d in body["data"]]
        if not body["has_more"]:
            break
        params["cursor"] = body["next_cursor"]
    assert seen == ORDER


@pytest.mark.parametrize(("query", "param"), [
    ("from=yesterday", "from"), ("to=2025-13-01", "to"), ("limit=0", "limit"),
    ("limit=many", "limit"), ("limit=100000", "limit"), ("cursor=%%%", "cursor"),
])
async def test_bad_queries_are_400(client: Client, query: str, param: str) -> None:
    resp = await client.get(URL(f"/admin/recordings?{query}", encoded=True), headers=AUTH)
    err = _error(await _json(resp, 400))
    assert err["param"] == param and err["code"] == "invalid_query"


async def test_metadata_and_transcript(client: Client, root: Path) -> None:
    meta = await _json(await client.get("/admin/recordings/rtc_b1", headers=AUTH), 200)
    assert meta["id"] == meta["call_id"] == "rtc_b1" and meta["agent"] == "support"
    wav = RecordingStore(root).file("rtc_b1", "audio.wav")
    assert meta["files"]["audio.wav"]["sha256"] == hashlib.sha256(wav.read_bytes()).hexdigest()

    resp = await client.get("/admin/recordings/rtc_b1/transcript", headers=AUTH)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    assert (await resp.text()).startswith('{"offset_ms": 10')
    body = await _json(await client.get("/admin/recordings/rtc_b1/transcript",
                                        params={"format": "json"}, headers=AUTH), 200)
    assert body["data"][0]["text"] == "hi"


async def test_audio_with_range(client: Client, root: Path) -> None:
    wav = RecordingStore(root).file("rtc_a1", "audio.wav").read_bytes()
    resp = await client.get("/admin/recordings/rtc_a1/audio", headers=AUTH)
    assert resp.status == 200 and resp.headers["Content-Type"] == "audio/wav"
    assert await resp.read() == wav
    resp = await client.get("/admin/recordings/rtc_a1/audio",
                            headers={**AUTH, "Range": "bytes=0-43"})
    assert resp.status == 206
    head = await resp.read()
    assert head == wav[:44] and head[:4] == b"RIFF" and head[8:12] == b"WAVE"
    assert resp.headers["Content-Range"] == f"bytes 0-43/{len(wav)}"
    resp = await client.get("/admin/recordings/rtc_a1/audio",
                            headers={**AUTH, "Range": "bytes=1000-"})
    assert resp.status == 206 and await resp.read() == wav[1000:]
    resp = await client.get("/admin/recordings/rtc_a1/audio",
                            headers={**AUTH, "Range": f"bytes={len(wav) + 10}-"})
    assert resp.status == 416
    resp = await client.get("/admin/recordings/rtc_a1/audio", params={"format": "opus"},
                            headers=AUTH)
    assert _error(await _json(resp, 404))["code"] == "recording_not_found"  # no Opus copy
    resp = await client.get("/admin/recordings/rtc_a1/audio", params={"format": "mp3"},
                            headers=AUTH)
    assert resp.status == 400


@pytest.mark.parametrize("path", [
    "/admin/recordings/..%2F..%2Fsecret.txt",
    "/admin/recordings/..%2F..%2Fsecret.txt/audio",
    "/admin/recordings/%2e%2e/transcript",
    "/admin/recordings/rtc_a1%2F..%2F..%2F..%2F..%2Fsecret.txt/audio",
    "/admin/recordings/..%252F..%252Fsecret.txt",
    "/admin/recordings/rtc%00a1",
    "/admin/recordings/" + "a" * 101,
    "/admin/recordings/rtc_a1%2Fmetadata.json",
    "/admin/recordings/rtc_a1/../../secret.txt",
    "/admin/recordings/%2E%2E%2F%2E%2E%2Fsecret.txt/audio",
])
async def test_bad_ids_and_traversal(client: Client, path: str) -> None:
    resp = await client.get(URL(path, encoded=True), headers=AUTH)
    assert resp.status in (400, 404), resp.status
    text = await resp.text()
    assert "TOP SECRET" not in text
    if resp.status == 400:
        assert _error(await resp.json())["code"] == "invalid_recording_id"
    resp = await client.delete(URL(path, encoded=True), headers=AUTH)
    assert resp.status in (400, 404, 405)


async def test_unknown_id_is_404(client: Client) -> None:
    for suffix in ("", "/audio", "/transcript"):
        resp = await client.get(f"/admin/recordings/rtc_nope{suffix}", headers=AUTH)
        assert _error(await _json(resp, 404))["code"] == "recording_not_found"


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": "Bearer "}, {"Authorization": TOKEN},
    {"Authorization": f"Bearer {TOKEN}x"},
])
async def test_no_or_wrong_token_is_401(client: Client, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/admin/recordings"), ("GET", "/admin/recordings/rtc_a1"),
                         ("GET", "/admin/recordings/rtc_a1/audio"),
                         ("DELETE", "/admin/recordings/rtc_a1")):
        resp = await client.request(method, path, headers=headers)
        err = _error(await _json(resp, 401))
        assert TOKEN not in str(err)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = await client.get("/admin/recordings/rtc_a1", headers=AUTH)
    assert resp.status == 200  # nothing was deleted


@pytest.mark.parametrize("token", [None, ""])
async def test_admin_api_disabled_without_token(root: Path, aiohttp_client: MakeClient,
                                                token: str | None) -> None:
    app = web.Application()
    add_routes(app, root=root, admin_token=token)
    client = await aiohttp_client(app)
    for headers in ({}, {"Authorization": "Bearer "}, AUTH):
        resp = await client.get("/admin/recordings", headers=headers)
        err = _error(await _json(resp, 503))
        assert err["message"] == "admin API disabled"


async def test_delete_is_audit_logged(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.audit"):
        body = await _json(await client.delete("/admin/recordings/rtc_c1", headers=AUTH), 200)
    assert body == {"id": "rtc_c1", "object": "recording.deleted", "deleted": True}
    msgs = [r.getMessage() for r in caplog.records if r.name == "gateway.audit"]
    assert any("action=delete_recording" in m and "call_id=rtc_c1" in m
               and "who=admin@127.0.0.1" in m and "when=" in m for m in msgs), msgs
    assert (await client.get("/admin/recordings/rtc_c1", headers=AUTH)).status == 404
    assert (await client.delete("/admin/recordings/rtc_c1", headers=AUTH)).status == 404
    body = await _json(await client.get("/admin/recordings", headers=AUTH), 200)
    assert "rtc_c1" not in [d["id"] for d in body["data"]]


async def test_live_call_is_409_and_cannot_be_deleted(client: Client, root: Path) -> None:
    rec = CallRecorder.start(root, "rtc_live", started_at=time.time(), metadata={})
    rec.caller_audio(bytes(960), 0)
    await rec.flush()
    try:
        for method in ("GET", "DELETE"):
            resp = await client.request(method, "/admin/recordings/rtc_live", headers=AUTH)
            assert _error(await _json(resp, 409))["code"] == "recording_in_progress"
    finally:
        rec.close("hangup", {})
        await rec.wait_closed()
    meta = await _json(await client.get("/admin/recordings/rtc_live", headers=AUTH), 200)
    assert meta["end_reason"] == "hangup"
