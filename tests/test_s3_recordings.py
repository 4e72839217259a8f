"""Recordings on S3-compatible storage: a real S3 protocol server (moto) on loopback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from moto.server import ThreadedMotoServer

from gateway import config as config_mod
from gateway.api.appkeys import METRICS, S3_UPLOADER
from gateway.recording import manifest
from gateway.recording.s3 import S3Uploader
from tests import s3_fixtures
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import ADMIN, Gateway, running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, from_pcm
from tests.s3_fixtures import fault_proxy, free_port, moto_server, s3_client, set_credentials
from tests.waiting import until

BUCKET = "gw-recordings"


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    set_credentials(monkeypatch)


@pytest.fixture
def moto_url(s3_env: None) -> Iterator[str]:
    with moto_server() as url:
        yield url


def gw_env(url: str, **extra: str) -> dict[str, str]:
    return s3_fixtures.gw_env(url, BUCKET, **extra)


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


# -- multipart upload ----------------------------------------------------------------------

MIB = 1 << 20
BIG = 12 * MIB + 1234  # three parts of 5 MiB, 5 MiB and 2 MiB + 1234 bytes


def finished_call(root: Path, call_id: str, audio_bytes: int) -> Path:
    """A finalized call directory whose audio is ``audio_bytes`` of noise."""
    d = root / "2025" / "01" / "31" / call_id
    d.mkdir(parents=True)
    (d / "audio.wav").write_bytes(np.random.default_rng(7).bytes(audio_bytes))
    (d / "transcript.jsonl").write_text('{"kind":"utterance","text":"hi"}\n')
    meta = {"call_id": call_id, "files": manifest.file_digests(d)}
    (d / "metadata.json").write_text(json.dumps(meta))
    return d


@contextlib.asynccontextmanager
async def running_uploader(cfg: config_mod.RecordingConfig, root: Path,
                           on_error: Callable[[], None] | None = None
                           ) -> AsyncIterator[S3Uploader]:
    uploader = S3Uploader(cfg, root, on_error=on_error)
    await uploader.start()
    try:
        yield uploader
    finally:
        await uploader.stop()


def multipart_cfg(url: str, attempts: int = 3) -> config_mod.RecordingConfig:
    return config_mod.load(None, gw_env(
        url, GATEWAY_RECORDING_S3_MULTIPART_THRESHOLD_MIB="6",
        GATEWAY_RECORDING_S3_PART_SIZE_MIB="5",
        GATEWAY_RECORDING_S3_MAX_ATTEMPTS=str(attempts))).recording


async def stored(url: str, key: str) -> tuple[bytes, dict[str, object]]:
    async with s3_client(url) as s3:
        head = await s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
        got = await s3.get_object(Bucket=BUCKET, Key=key)
        async with got["Body"] as body:
            return await body.read(), head


async def open_uploads(url: str) -> list[object]:
    async with s3_client(url) as s3:
        return list((await s3.list_multipart_uploads(Bucket=BUCKET)).get("Uploads", []))


AUDIO_KEY = "calls/2025/01/31/{}/audio.wav"


def test_part_size_respects_s3_limits() -> None:
    from gateway.recording.s3_multipart import MIN_PART, part_size
    assert part_size(12 * MIB, 5) == MIN_PART
    assert part_size(12 * MIB, 1) == MIN_PART  # never below S3's minimum
    assert part_size(200 * MIB, 16) == 16 * MIB
    huge = 400 * 1024 * MIB
    assert -(-huge // part_size(huge, 16)) <= 10_000  # at most 10 000 parts


async def test_large_file_goes_up_in_parts_and_is_verified(moto_url: str,
                                                           tmp_path: Path) -> None:
    async with s3_client(moto_url) as s3:
        await s3.create_bucket(Bucket=BUCKET)
    d = finished_call(tmp_path, "rtc_big1", BIG)
    files = json.loads((d / "metadata.json").read_text())["files"]
    async with fault_proxy(moto_url) as (proxy, url):
        async with running_uploader(multipart_cfg(url), tmp_path) as uploader:
            t0 = time.perf_counter()
            assert await uploader.upload_call(d)
            elapsed = time.perf_counter() - t0
    print(f"multipart upload of {BIG / MIB:.1f} MiB through the proxy: {elapsed:.2f} s")
    assert len(proxy.calls("POST", "uploads")) == 1
    assert sorted(int(q["partNumber"]) for q in proxy.calls("PUT", "partNumber")) == [1, 2, 3]
    assert len(proxy.calls("POST", "uploadId")) == 1 and not proxy.calls("DELETE", "uploadId")
    # The small files went up in one PUT each; the local copy went after the checks.
    single = [p for m, p, q in proxy.requests if m == "PUT" and "partNumber" not in q]
    assert any(p.endswith("/rtc_big1/transcript.jsonl") for p in single)
    assert not any(p.endswith("/rtc_big1/audio.wav") for p in single)
    assert not d.exists()
    data, head = await stored(moto_url, AUDIO_KEY.format("rtc_big1"))
    assert len(data) == BIG == head["ContentLength"]
    assert hashlib.sha256(data).hexdigest() == files["audio.wav"]["sha256"]
    # Composite checksum and ETag of the 3 parts, as S3 defines them
    parts = [data[i:i + 5 * MIB] for i in range(0, BIG, 5 * MIB)]
    composite = base64.b64encode(hashlib.sha256(
        b"".join(hashlib.sha256(p).digest() for p in parts)).digest()).decode()
    assert str(head["ChecksumSHA256"]).partition("-")[0] == composite
    assert head["ETag"] == '"' + hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)
                                             ).hexdigest() + '-3"'
    assert await open_uploads(moto_url) == []


async def test_transient_part_error_is_retried_in_place(moto_url: str,
                                                        tmp_path: Path) -> None:
    """One 500 on a part: the S3 client's own single retry sends the part again within the
    same upload; nothing is aborted."""
    async with s3_client(moto_url) as s3:
        await s3.create_bucket(Bucket=BUCKET)
    d = finished_call(tmp_path, "rtc_big2", BIG)
    files = json.loads((d / "metadata.json").read_text())["files"]
    part2: list[str] = []

    def fail(request: web.Request) -> bool:  # the first part 2 request only
        if request.method == "PUT" and request.query.get("partNumber") == "2":
            part2.append(request.query["uploadId"])
            return len(part2) == 1
        return False

    async with fault_proxy(moto_url) as (proxy, url):
        proxy.fail = fail
        async with running_uploader(multipart_cfg(url), tmp_path) as uploader:
            assert await uploader.upload_call(d)
    assert proxy.failed == 1 and len(part2) == 2 and part2[0] == part2[1]
    assert len(proxy.calls("POST", "uploads")) == 1 and not proxy.calls("DELETE", "uploadId")
    data, _head = await stored(moto_url, AUDIO_KEY.format("rtc_big2"))
    assert hashlib.sha256(data).hexdigest() == files["audio.wav"]["sha256"]
    assert not d.exists()


async def test_failing_part_aborts_the_upload_and_a_new_upload_succeeds(
        moto_url: str, tmp_path: Path) -> None:
    """Part 2 of the first upload fails on every try: that upload is aborted (no orphan
    parts), and the retry, after the backoff, starts a new upload that succeeds."""
    async with s3_client(moto_url) as s3:
        await s3.create_bucket(Bucket=BUCKET)
    d = finished_call(tmp_path, "rtc_big5", BIG)
    files = json.loads((d / "metadata.json").read_text())["files"]
    doomed: list[str] = []

    def fail(request: web.Request) -> bool:
        if request.method == "PUT" and request.query.get("partNumber") == "2":
            doomed[:] = doomed or [request.query["uploadId"]]
            return request.query["uploadId"] == doomed[0]
        return False

    async with fault_proxy(moto_url) as (proxy, url):
        proxy.fail = fail
        errors: list[int] = []
        async with running_uploader(multipart_cfg(url), tmp_path,
                                    on_error=lambda: errors.append(1)) as uploader:
            assert await uploader.upload_call(d)
    assert proxy.failed == 2 and not errors  # the part and the client's one retry of it
    assert [q["uploadId"] for q in proxy.calls("DELETE", "uploadId")] == doomed
    assert len(proxy.calls("POST", "uploads")) == 2
    completed = [q["uploadId"] for q in proxy.calls("POST", "uploadId")]
    assert len(completed) == 1 and completed != doomed
    # part 3 of the aborted upload was never sent
    assert [q["uploadId"] for q in proxy.calls("PUT", "partNumber")
            if q["partNumber"] == "3"] == completed
    assert await open_uploads(moto_url) == []  # no orphan parts
    data, _head = await stored(moto_url, AUDIO_KEY.format("rtc_big5"))
    assert hashlib.sha256(data).hexdigest() == files["audio.wav"]["sha256"]
    assert not d.exists()


async def test_part_corrupted_in_transit_is_caught_and_reuploaded(moto_url: str,
                                                                  tmp_path: Path) -> None:
    """moto, unlike S3, stores a part whose bytes do not match its checksum header: the
    part's ETag (its MD5) gives it away, the upload is aborted and done again."""
    async with s3_client(moto_url) as s3:
        await s3.create_bucket(Bucket=BUCKET)
    d = finished_call(tmp_path, "rtc_big3", BIG)
    files = json.loads((d / "metadata.json").read_text())["files"]
    seen: list[int] = []

    def corrupt(request: web.Request) -> bool:
        if request.method == "PUT" and request.query.get("partNumber") == "3":
            seen.append(1)
            return len(seen) == 1
        return False

    async with fault_proxy(moto_url) as (proxy, url):
        proxy.corrupt = corrupt
        async with running_uploader(multipart_cfg(url), tmp_path) as uploader:
            assert await uploader.upload_call(d)
    assert proxy.corrupted == 1
    assert len(proxy.calls("DELETE", "uploadId")) == 1
    assert len(proxy.calls("POST", "uploads")) == 2
    assert len(proxy.calls("POST", "uploadId")) == 1  # only the intact upload completed
    assert await open_uploads(moto_url) == []
    data, _head = await stored(moto_url, AUDIO_KEY.format("rtc_big3"))
    assert hashlib.sha256(data).hexdigest() == files["audio.wav"]["sha256"]
    assert not d.exists()


async def test_part_failing_every_time_keeps_local_copy_and_no_parts(moto_url: str,
                                                                     tmp_path: Path) -> None:
    async with s3_client(moto_url) as s3:
        await s3.create_bucket(Bucket=BUCKET)
    d = finished_call(tmp_path, "rtc_big4", BIG)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    async with fault_proxy(moto_url) as (proxy, url):
        proxy.fail = lambda r: r.method == "PUT" and r.query.get("partNumber") == "2"
        errors: list[int] = []
        async with running_uploader(multipart_cfg(url, attempts=2), tmp_path,
                                    on_error=lambda: errors.append(1)) as uploader:
            assert not await uploader.upload_call(d)
    assert errors == [1] and uploader.failed == 1
    assert len(proxy.calls("DELETE", "uploadId")) == 2  # each attempt aborted its upload
    assert await open_uploads(moto_url) == []
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before  # untouched
    async with s3_client(moto_url) as s3:
        listed = await s3.list_objects_v2(Bucket=BUCKET, Prefix="calls/")
    assert "Contents" not in listed  # nothing of the call is in the bucket
