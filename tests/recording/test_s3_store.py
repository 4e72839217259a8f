"""Recordings split between the local directory and S3 (moto's real S3 server on loopback):
the admin API's listing, metadata and transcript, and the CLI as a real process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway import config as config_mod
from gateway.api.appkeys import S3_UPLOADER
from gateway.api.recordings import add_routes
from gateway.recording import RecordingStore
from gateway.recording.s3 import UPLOADED, S3Uploader
from tests.s3_fixtures import SECRET, free_port, gw_env, moto_server, s3_client, set_credentials

from .conftest import ORDER

BUCKET = "gw-split"
TOKEN = "adm_" + "y" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: Moved to S3 (local copy removed), kept in both places, and left local only.
UPLOADED_IDS = ("rtc_a1", "rtc_b2", "rtc_d1")
BOTH_IDS = ("rtc_c1",)
LOCAL_IDS = ("rtc_a2", "rtc_b1")
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    set_credentials(monkeypatch)
    with moto_server() as url:
        yield url


def settings(url: str, **extra: str) -> config_mod.RecordingConfig:
    return config_mod.load(None, gw_env(url, BUCKET, **extra)).recording


@pytest.fixture
async def split(root: Path, moto_url: str) -> AsyncIterator[S3Uploader]:
    """The conftest's six calls: three uploaded, one uploaded and kept, two local only."""
    async with s3_client(moto_url) as s3:
        await s3.create_bucket(Bucket=BUCKET)
    store = RecordingStore(root)
    keeper = S3Uploader(settings(moto_url, GATEWAY_RECORDING_S3_KEEP_LOCAL="true"), root)
    await keeper.start()
    try:
        for call_id in BOTH_IDS:
            assert await keeper.upload_call(store.resolve(call_id))
    finally:
        await keeper.stop()
    uploader = S3Uploader(settings(moto_url), root)
    await uploader.start()
    try:
        for call_id in UPLOADED_IDS:
            assert await uploader.upload_call(store.resolve(call_id))
        yield uploader
    finally:
        await uploader.stop()


@pytest.fixture
async def client(split: S3Uploader, root: Path, aiohttp_client: MakeClient) -> Client:
    app = web.Application()
    add_routes(app, root=root, admin_token=TOKEN)
    app[S3_UPLOADER] = split
    return await aiohttp_client(app)


async def _ids(client: Client, **params: str) -> tuple[list[str], Any]:
    resp = await client.get("/admin/recordings", params=params, headers=AUTH)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    return [d["id"] for d in body["data"]], body


def _local_calls(root: Path) -> dict[str, bool]:
    """Local call id -> marked uploaded."""
    return {d.name: (d / UPLOADED).exists() for d in root.rglob("rtc_*") if d.is_dir()}


async def test_split_is_real(split: S3Uploader, root: Path) -> None:
    assert _local_calls(root) == {"rtc_c1": True, "rtc_a2": False, "rtc_b1": False}
    for call_id in (*UPLOADED_IDS, *BOTH_IDS):
        assert await split.fetch_metadata(call_id) is not None


async def test_listing_merges_local_and_s3(client: Client) -> None:
    ids, body = await _ids(client)
    assert ids == ORDER  # same order as when every call was local; rtc_c1 once
    assert body["has_more"] is False and body["next_cursor"] is None
    assert (await _ids(client, caller="+15550000001"))[0] == ["rtc_d1", "rtc_b1", "rtc_a1"]
    q = {"agent": "support", "from": "2025-03-01T12:00:00Z", "to": "1741219200"}
    assert (await _ids(client, **q))[0] == ["rtc_c1", "rtc_b1", "rtc_a2"]
    assert (await _ids(client, agent="sales"))[0] == ["rtc_d1", "rtc_b2", "rtc_a1"]
    for limit in (1, 2, 4):
        seen: list[str] = []
        params = {"limit": str(limit)}
        while True:
            page, body = await _ids(client, **params)
            assert len(page) <= limit
            seen += page
            if not body["has_more"]:
                break
            params["cursor"] = body["next_cursor"]
        assert seen == ORDER, limit
    resp = await client.get("/admin/recordings", params={"limit": "0"}, headers=AUTH)
    assert resp.status == 400


async def test_metadata_and_transcript_of_an_uploaded_call(client: Client,
                                                           split: S3Uploader) -> None:
    resp = await client.get("/admin/recordings/rtc_a1", headers=AUTH)
    assert resp.status == 200 and (await resp.json())["id"] == "rtc_a1"
    resp = await client.get("/admin/recordings/rtc_a1/transcript", headers=AUTH)
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/x-ndjson"
    assert (await resp.text()).startswith('{"offset_ms": 10')
    resp = await client.get("/admin/recordings/rtc_a1/transcript",
                            params={"format": "json"}, headers=AUTH)
    assert (await resp.json())["data"][0]["text"] == "hi"
    resp = await client.get("/admin/recordings/rtc_nope/transcript", headers=AUTH)
    assert resp.status == 404


async def test_listing_with_storage_down_is_502(root: Path, aiohttp_client: MakeClient,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    set_credentials(monkeypatch)
    dead = S3Uploader(settings(f"http://127.0.0.1:{free_port()}"), root)
    await dead.start()
    try:
        app = web.Application()
        add_routes(app, root=root, admin_token=TOKEN)
        app[S3_UPLOADER] = dead
        client = await aiohttp_client(app)
        resp = await client.get("/admin/recordings", headers=AUTH)
        assert resp.status == 502
        body = await resp.json()
        assert body["error"]["code"] == "storage_unavailable" and SECRET not in str(body)
    finally:
        await dead.stop()


# -- the CLI as a process -------------------------------------------------------------------

async def cli(root: Path, url: str, *argv: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(gw_env(url, BUCKET))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "recordings", *argv, "--root", str(root), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    assert SECRET not in out.decode() + err.decode()
    return proc.returncode, out.decode(), err.decode()


def _listed(out: str) -> list[str]:
    return [line.split()[1] for line in out.splitlines() if not line.startswith("#")]


async def test_cli_reads_s3(split: S3Uploader, root: Path, moto_url: str,
                            tmp_path: Path) -> None:
    code, out, _ = await cli(root, moto_url, "list")
    assert code == 0 and _listed(out) == ORDER
    code, out, _ = await cli(root, moto_url, "list", "--local-only")
    assert code == 0 and _listed(out) == ["rtc_c1", "rtc_b1", "rtc_a2"]
    code, out, _ = await cli(root, moto_url, "list", "--agent", "sales", "--limit", "2")
    assert _listed(out) == ["rtc_d1", "rtc_b2"]
    cursor = out.splitlines()[-1].split("--cursor ")[1]
    code, out, _ = await cli(root, moto_url, "list", "--agent", "sales", "--cursor", cursor)
    assert _listed(out) == ["rtc_a1"]

    code, out, _ = await cli(root, moto_url, "show", "rtc_d1")  # in S3 only
    meta = json.loads(out)
    assert code == 0 and meta["call_id"] == "rtc_d1" and meta["agent"] == "sales"

    code, out, _ = await cli(root, moto_url, "export", "rtc_d1", "--out", str(tmp_path / "x"))
    assert code == 0 and "exported rtc_d1" in out
    copied = tmp_path / "x" / "rtc_d1"
    for name, info in meta["files"].items():
        assert hashlib.sha256((copied / name).read_bytes()).hexdigest() == info["sha256"]

    code, out, _ = await cli(root, moto_url, "verify")
    assert (code, out.splitlines()[-1]) == (0, "verified 6 call(s): 6 intact, 0 altered")
    code, out, _ = await cli(root, moto_url, "verify", "rtc_a1")
    assert code == 0 and "1 intact" in out
    code, _, err = await cli(root, moto_url, "verify", "rtc_zz")
    assert code == 3 and "not found" in err


async def test_cli_verify_finds_altered_and_missing_objects(split: S3Uploader, root: Path,
                                                            moto_url: str) -> None:
    meta = await split.fetch_metadata("rtc_b2")
    assert meta is not None
    day = meta["started_at"][:10].replace("-", "/")
    async with s3_client(moto_url) as s3:
        key = f"calls/{day}/rtc_b2/audio.wav"
        got = await s3.get_object(Bucket=BUCKET, Key=key)
        async with got["Body"] as body:
            wav = bytearray(await body.read())
        wav[-1] ^= 0x80  # one bit of the last sample
        await s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(wav))
        await s3.delete_object(Bucket=BUCKET, Key=f"calls/{day}/rtc_b2/transcript.jsonl")
    code, out, _ = await cli(root, moto_url, "verify")
    assert code == 1
    assert "MISMATCH (s3) rtc_b2/audio.wav: sha256" in out
    assert "MISMATCH (s3) rtc_b2/transcript.jsonl: missing" in out
    assert out.splitlines()[-1] == "verified 6 call(s): 5 intact, 1 altered"
    assert (await cli(root, moto_url, "verify", "rtc_b2"))[0] == 1
    assert (await cli(root, moto_url, "verify", "rtc_a1"))[0] == 0


async def test_cli_with_storage_down(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_credentials(monkeypatch)
    code, _, err = await cli(root, f"http://127.0.0.1:{free_port()}", "list")
    assert code == 4 and "object storage" in err and "Traceback" not in err
    code, out, _ = await cli(root, f"http://127.0.0.1:{free_port()}", "list", "--local-only")
    assert code == 0 and _listed(out) == ORDER
