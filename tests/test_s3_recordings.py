"""Recordings on S3-compatible storage: a real S3 protocol server (moto) on loopback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aiobotocore.session import get_session
from moto.server import ThreadedMotoServer

from gateway import config as config_mod
from gateway.appkeys import METRICS, S3_UPLOADER
from gateway.recording.s3 import S3Uploader
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import ADMIN, Gateway, running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, from_pcm
from tests.waiting import until

BUCKET = "gw-recordings"
KEY_ENV, SECRET_ENV = "TEST_S3_KEY_ID", "TEST_S3_SECRET"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "testing-key")
    monkeypatch.setenv(SECRET_ENV, "testing-secret")


@pytest.fixture
def moto_url(s3_env: None) -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_client(url: str):  # type: ignore[no-untyped-def]
    return get_session().create_client(
        "s3", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id="testing-key", aws_secret_access_key="testing-secret")


def gw_env(url: str, **extra: str) -> dict[str, str]:
    return {"GATEWAY_RECORDING_S3_ENDPOINT_URL": url, "GATEWAY_RECORDING_S3_BUCKET": BUCKET,
            "GATEWAY_RECORDING_S3_PREFIX": "calls", "GATEWAY_RECORDING_S3_REGION": "us-east-1",
            "GATEWAY_RECORDING_S3_ACCESS_KEY_ENV": KEY_ENV,
            "GATEWAY_RECORDING_S3_SECRET_KEY_ENV": SECRET_ENV,
            "GATEWAY_RECORDING_S3_MAX_ATTEMPTS": "2", "GATEWAY_RECORDING_S3_BACKOFF_S": "0.05",
            **extra}


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(48000 * seconds)) / 48000
    return (6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


async def record_call(gw: Gateway, seconds: float) -> str:
    peer = ClientPeer(PcmSourceTrack(from_pcm(tone(seconds))))
    try:
        await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
        call_id = peer.location.rsplit("/", 1)[1]  # type: ignore[union-attr]
        await asyncio.sleep(seconds)
    finally:
        await peer.close()
    return call_id


async def test_call_uploaded_verified_local_removed_and_served_from_s3(moto_url: str) -> None:
    async with s3_client(moto_url) as s3:
        await s3.create_bucket(Bucket=BUCKET)
    async with running_fake() as (_fake, url), running_gateway(url, env=gw_env(moto_url)) as gw:
        call_id = await record_call(gw, 1.5)
        uploader = gw.app[S3_UPLOADER]
        await until(lambda: uploader.uploaded == 1, 15, "the call was uploaded")
        # The local directory went only after every object was confirmed.
        assert not any(p.name == call_id for p in gw.recordings.rglob("*"))

        async with s3_client(moto_url) as s3:
            listed = await s3.list_objects_v2(Bucket=BUCKET, Prefix="calls/")
            keys = {o["Key"]: o["Size"] for o in listed["Contents"]}
            meta_key = next(k for k in keys if k.endswith(f"/{call_id}/metadata.json"))
            day_prefix = meta_key.rsplit("/", 1)[0]
            got = await s3.get_object(Bucket=BUCKET, Key=meta_key)
            async with got["Body"] as body:
                meta = json.loads(await body.read())
            assert meta["call_id"] == call_id
            # s3://bucket/prefix/YYYY/MM/DD/<call_id>/<file>, the UTC day the call started.
            assert day_prefix == f"calls/{meta['started_at'][:10].replace('-', '/')}/{call_id}"
            # Every file the manifest lists is there with its size and sha256.
            for name, info in meta["files"].items():
                key = f"{day_prefix}/{name}"
                assert keys[key] == info["size"], name
                head = await s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
                assert head["ContentLength"] == info["size"]
                assert head["ChecksumSHA256"] == base64.b64encode(
                    bytes.fromhex(info["sha256"])).decode()
                obj = await s3.get_object(Bucket=BUCKET, Key=key)
                async with obj["Body"] as body:
                    assert hashlib.sha256(await body.read()).hexdigest() == info["sha256"]
            audio_size = meta["files"]["audio.wav"]["size"]

        # The admin API reads metadata and audio from S3 now the local copy is gone.
        auth = {"Authorization": f"Bearer {ADMIN}"}
        async with gw.http.get(f"{gw.base}/admin/recordings/{call_id}", headers=auth) as r:
            assert r.status == 200
            served = await r.json()
        assert served["id"] == call_id and served["files"] == meta["files"]
        async with gw.http.get(f"{gw.base}/admin/recordings/{call_id}/audio",
                               headers=auth) as r:
            assert r.status == 200
            wav = await r.read()
        assert len(wav) == audio_size and wav[:4] == b"RIFF"
        assert hashlib.sha256(wav).hexdigest() == meta["files"]["audio.wav"]["sha256"]
        async with gw.http.get(f"{gw.base}/admin/recordings/{call_id}/audio",
                               headers={**auth, "Range": "bytes=0-43"}) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes 0-43/{audio_size}"
            assert await r.read() == wav[:44]
        async with gw.http.get(f"{gw.base}/admin/recordings/rtc_nosuchcall", headers=auth) as r:
            assert r.status == 404


async def test_failing_endpoint_keeps_local_copy_and_counts_error(s3_env: None) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with running_fake() as (_fake, url), running_gateway(url, env=gw_env(dead)) as gw:
        errors = gw.app[METRICS].recording_errors
        before = errors._value.get()
        call_id = await record_call(gw, 0.8)
        uploader = gw.app[S3_UPLOADER]
        await until(lambda: uploader.failed == 1, 20, "the upload gave up")
        assert errors._value.get() == before + 1
        kept = [p for p in gw.recordings.rglob(call_id) if p.is_dir()]
        assert kept and (kept[0] / "metadata.json").is_file()
        assert (kept[0] / "audio.wav").is_file()
        async with gw.http.get(f"{gw.base}/metrics") as r:
            text = await r.text()
        assert any(line.startswith("gateway_recording_errors_total ")
                   and float(line.split()[1]) >= 1 for line in text.splitlines())


async def test_upload_retried_until_storage_returns(s3_env: None, tmp_path: Path) -> None:
    """The first attempts fail (no server yet); a later retry succeeds; leftovers at
    start-up are found by ``pending_local``."""
    d = tmp_path / "2025" / "01" / "31" / "rtc_retry1"
    d.mkdir(parents=True)
    (d / "audio.wav").write_bytes(b"RIFF" + bytes(1000))
    (d / "transcript.jsonl").write_text('{"kind":"utterance"}\n')
    (d / "metadata.json").write_text(json.dumps({"call_id": "rtc_retry1"}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cfg = config_mod.load(None, gw_env(url, GATEWAY_RECORDING_S3_MAX_ATTEMPTS="8",
                                       GATEWAY_RECORDING_S3_BACKOFF_S="0.1")).recording
    errors: list[int] = []
    uploader = S3Uploader(cfg, tmp_path, on_error=lambda: errors.append(1))
    assert uploader.pending_local() == [d]
    await uploader.start()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    try:
        upload = asyncio.create_task(uploader.upload_call(d))
        await asyncio.sleep(0.3)  # a few attempts fail meanwhile
        assert not upload.done()
        server.start()
        async with s3_client(url) as s3:
            await s3.create_bucket(Bucket=BUCKET)
        assert await upload
        assert not d.exists() and not errors
        meta = await uploader.fetch_metadata("rtc_retry1")
        assert meta == {"call_id": "rtc_retry1"}
        obj = await uploader.open_audio("rtc_retry1", range_header="bytes=0-3")
        assert obj is not None and obj.status == 206
        try:
            assert b"".join([c async for c in obj.chunks()]) == b"RIFF"
        finally:
            obj.close()
        assert await uploader.fetch_metadata("rtc_missing") is None
    finally:
        await uploader.stop()
        server.stop()
