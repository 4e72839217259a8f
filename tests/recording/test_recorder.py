"""CallRecorder end to end: real writer thread, real files, synthesized calls fed fast."""

from __future__ import annotations

import asyncio
import hashlib
import json
import statistics
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.audio.formats import FRAME_SAMPLES, SAMPLE_RATE
from gateway.recording import CallRecorder, RecordingStore

from .signals import chirp, frames, ncc_peak, noise, read_wav

META = {"transport": "webrtc", "caller": "+15550001111", "agent": "support",
        "model": "gpt-realtime"}
MS = SAMPLE_RATE // 1000


def _start(root: Path, call_id: str = "rtc_test", **kw: Any) -> CallRecorder:
    return CallRecorder.start(root, call_id, started_at=time.time(), metadata=META, **kw)


async def _finish(rec: CallRecorder, reason: str = "hangup") -> dict[str, Any]:
    rec.close(reason, {"hangup_by": "caller"})
    await rec.wait_closed()
    assert rec.closed
    meta: dict[str, Any] = json.loads((rec.directory / "metadata.json").read_text())
    return meta


async def test_channels_hold_what_was_given_where_it_was_given(tmp_path: Path) -> None:
    """Left = caller (continuous, with chirps), right = agent (bursts with gaps)."""
    rec = _start(tmp_path)
    caller = noise(6 * SAMPLE_RATE, 30, 1)
    caller_chirps = {500: chirp(200, 300, 3000), 2300: chirp(200, 500, 4000),
                     4100: chirp(200, 3000, 300)}
    for at, c in caller_chirps.items():
        caller[at * MS:at * MS + len(c)] += c
    agent_bursts = {1000: chirp(400, 200, 2000), 3020: chirp(300, 2500, 800)}
    agent_frames = {at + i * 20: f for at, b in agent_bursts.items()
                    for i, f in enumerate(frames(b))}
    for i, f in enumerate(frames(caller)):
        rec.caller_audio(f, i * 20)
        if i * 20 in agent_frames:
            rec.agent_audio(agent_frames[i * 20], i * 20)
    meta = await _finish(rec)
    left, right = read_wav(rec.directory / "audio.wav")
    assert len(left) == 6 * SAMPLE_RATE
    for at, c in caller_chirps.items():
        lag, peak = ncc_peak(left, c, at * MS, search=100 * MS)
        assert peak >= 0.9 and lag == 0, (at, lag, peak)
    for at, b in agent_bursts.items():
        lag, peak = ncc_peak(right, b, at * MS, search=100 * MS)
        assert peak >= 0.9 and lag == 0, (at, lag, peak)
    # gaps on the agent side are digital silence
    assert not right[:1000 * MS].any()
    assert not right[1400 * MS:3020 * MS].any()
    assert not right[3320 * MS:].any()
    assert meta["audio"]["caller_seconds"] == 6.0
    assert meta["audio"]["agent_seconds"] == pytest.approx(0.72, abs=0.021)


async def test_ten_minute_call_with_jitter_and_skew_stays_within_20ms(tmp_path: Path) -> None:
    """10 minutes fed in ~2 s. Caller: continuous quiet floor with a marker chirp every 5 s,
    offsets jittered +-15 ms and a sender clock 150 ppm slow. Agent: 2 s talk spurts every
    10 s, jittered +-15 ms, sender 100 ppm fast. Every marker found within 20 ms."""
    rec = _start(tmp_path, queue_bytes=4 << 20, queue_items=4096)
    rng = np.random.default_rng(11)
    floor = frames(noise(FRAME_SAMPLES * 16, 40, 2))
    marker = chirp(20, 400, 6000, amp=0.6).astype(np.int32)
    spurt = chirp(2000, 300, 1200, amp=0.3)
    spurt_frames = frames(spurt)
    caller_truth: list[float] = []
    agent_truth: list[float] = []
    n_frames = 10 * 60 * 50
    for i in range(n_frames):
        t = i * 20 * (1 + 150e-6)
        f = floor[i % len(floor)]
        if i % 250 == 100:
            x = np.frombuffer(f, "<i2").astype(np.int32) + marker
            f = np.clip(x, -32768, 32767).astype("<i2").tobytes()
            caller_truth.append(t)
        rec.caller_audio(f, t + rng.uniform(-15, 15))
        k = i % 500
        if 50 <= k < 150:
            ta = i * 20 * (1 - 100e-6)
            if k == 50:
                agent_truth.append(ta)
            rec.agent_audio(spurt_frames[k - 50], ta + rng.uniform(-15, 15))
        if i % 1000 == 999:
            await rec.flush()
            assert rec.dropped["caller_ms"] == 0
    meta = await _finish(rec)
    assert meta["recording"]["dropped"]["caller_ms"] == 0
    left, right = read_wav(rec.directory / "audio.wav")
    errors = []
    for t in caller_truth:
        lag, peak = ncc_peak(left, marker.astype(np.int16), round(t * MS), search=60 * MS)
        assert peak >= 0.9
        errors.append(abs(lag) / MS)
    agent_errors = []
    onset = spurt[:200 * MS]  # where a spurt starts is what alignment is about
    for t in agent_truth:
        lag, peak = ncc_peak(right, onset, round(t * MS), search=60 * MS)
        assert peak >= 0.9
        agent_errors.append(abs(lag) / MS)
    assert len(errors) == 120 and len(agent_errors) == 60
    assert max(errors) < 20, max(errors)
    assert max(agent_errors) < 20, max(agent_errors)
    # the skew was corrected (silence inserted in quiet stretches), not left to accumulate
    assert meta["recording"]["alignment"]["caller"]["inserted_ms"] > 60
    assert max(errors[-10:]) < 20
    assert meta["recording"]["max_pending_ms"] <= 2100  # hold 1 s + block 1 s + a frame


async def test_transcript_lines(tmp_path: Path) -> None:
    rec = _start(tmp_path)
    rec.transcript("utterance", speaker="caller", text="what's the weather?",
                   item_id="item_1", offset_ms=1200)
    rec.transcript("tool_call", item_id="item_2", offset_ms=2500, name="get_weather",
                   arguments={"city": "Paris"}, call_id="call_1")
    rec.transcript("tool_result", item_id="item_3", offset_ms=2700, call_id="call_1",
                   output="sunny")
    rec.transcript("utterance", speaker="agent", text="It is sun", item_id="item_4",
                   offset_ms=3000, truncated=True, audio_end_ms=900)
    rec.transcript("interruption", offset_ms=3900, item_id="item_4")
    rec.transcript("idle_prompt", text="Are you still there?", offset_ms=20_000)
    rec.transcript("reconnected", offset_ms=21_000, reason="upstream closed")
    rec.transcript("dead_mic", offset_ms=22_000)
    meta = await _finish(rec)
    lines = [json.loads(x) for x in (rec.directory / "transcript.jsonl").read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["utterance", "tool_call", "tool_result", "utterance",
                                          "interruption", "idle_prompt", "reconnected",
                                          "dead_mic"]
    first = lines[0]
    assert first["speaker"] == "caller" and first["text"] == "what's the weather?"
    assert first["item_id"] == "item_1" and first["offset_ms"] == 1200
    expect_wall = rec.started_at + 1.2
    got = time.mktime(time.strptime(first["wall_time"][:19], "%Y-%m-%dT%H:%M:%S"))
    got += float("0" + first["wall_time"][19:-1]) - time.timezone
    assert first["wall_time"].endswith("Z") and abs(got - expect_wall) < 0.002
    assert lines[1]["arguments"] == {"city": "Paris"} and lines[1]["name"] == "get_weather"
    assert lines[3]["truncated"] is True and lines[3]["speaker"] == "agent"
    assert all({"offset_ms", "wall_time", "kind", "speaker", "text", "item_id"} <= x.keys()
               for x in lines)
    assert meta["recording"]["transcript_lines"] == 8


async def test_metadata_fields_and_checksums(tmp_path: Path) -> None:
    written: list[int] = []
    rec = _start(tmp_path, "rtc_meta", on_bytes=written.append, opus_copy=True)
    for i, f in enumerate(frames(chirp(1000, 300, 3000))):
        rec.caller_audio(f, i * 20)
        rec.agent_audio(f, 200 + i * 20)
    rec.transcript("utterance", speaker="caller", text="hi", offset_ms=0)
    meta = await _finish(rec, "client_hangup")
    for key in ("call_id", "transport", "caller", "agent", "model", "started_at", "ended_at",
                "duration_s", "end_reason", "format_version", "files", "audio"):
        assert key in meta
    assert meta["call_id"] == "rtc_meta" and meta["end_reason"] == "client_hangup"
    assert meta["caller"] == "+15550001111" and meta["agent"] == "support"
    assert meta["hangup_by"] == "caller"
    assert meta["audio"]["caller_seconds"] == 1.0 and meta["audio"]["agent_seconds"] == 1.0
    assert meta["ended_at_unix"] >= meta["started_at_unix"]
    assert set(meta["files"]) == {"audio.wav", "transcript.jsonl", "audio.opus"}
    for name, info in meta["files"].items():
        data = (rec.directory / name).read_bytes()
        assert info["size"] == len(data)
        assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert sum(written) == meta["files"]["audio.wav"]["size"] - 44 + \
        meta["files"]["transcript.jsonl"]["size"]
    assert not (rec.directory / ".recording.json").exists()
    assert RecordingStore(tmp_path).verify("rtc_meta") == []


async def test_opus_copy_decodes_to_the_same_duration(tmp_path: Path) -> None:
    import av

    rec = _start(tmp_path, opus_copy=True)
    for i, f in enumerate(frames(noise(3 * SAMPLE_RATE, 5000, 4))):
        rec.caller_audio(f, i * 20)
    await _finish(rec)
    with av.open(str(rec.directory / "audio.opus")) as c:
        samples = sum(fr.samples for fr in c.decode(audio=0))
        rate = c.streams.audio[0].rate
    assert abs(samples / rate - 3.0) < 0.03


async def test_queue_is_bounded_and_drops_are_counted(tmp_path: Path) -> None:
    """A writer that cannot keep up costs dropped audio, never memory or a blocked loop."""
    rec = _start(tmp_path, queue_bytes=32 * 1024, queue_items=64)
    f = frames(noise(FRAME_SAMPLES, 8000, 1))[0]
    took: list[float] = []
    for i in range(3000):  # 60 s of caller audio without yielding to anything
        t0 = time.perf_counter()
        rec.caller_audio(f, i * 20)
        took.append(time.perf_counter() - t0)
        items, nbytes = rec.queued
        assert items <= 64 and nbytes <= 32 * 1024
    dropped_ms = rec.dropped["caller_ms"]
    assert dropped_ms > 0
    # Never waits for the writer (which drains every 0.5 s). A single call may still wait
    # a GIL switch interval (5 ms) while the writer thread runs Python code.
    assert statistics.median(took) < 20e-6 and max(took) < 0.1
    await rec.flush()
    rec.caller_audio(f, 60_000)
    meta = await _finish(rec)
    assert meta["recording"]["dropped"]["caller_ms"] == dropped_ms
    left, _ = read_wav(rec.directory / "audio.wav")
    # what got through sits at its offset; what was dropped is silence in its place
    kept_ms = 60_000 - dropped_ms
    assert len(left) == 60_000 * MS + FRAME_SAMPLES
    voiced = np.count_nonzero(left.reshape(-1, FRAME_SAMPLES).any(axis=1))
    assert voiced * 20 == kept_ms + 20
    assert np.array_equal(left[:FRAME_SAMPLES], np.frombuffer(f, "<i2"))


async def test_flush_makes_the_audio_so_far_readable(tmp_path: Path) -> None:
    rec = CallRecorder.start(tmp_path, "rtc_live", started_at=time.time() - 3.0,
                             metadata=META)
    for i, f in enumerate(frames(noise(SAMPLE_RATE, 3000, 2))):
        rec.caller_audio(f, i * 20)
    await rec.flush()
    with wave.open(str(rec.directory / "audio.wav"), "rb") as w:
        # the agent said nothing: its side is filled to the wall clock minus 0.25 s
        assert w.getnframes() >= 2.5 * SAMPLE_RATE
    assert RecordingStore(tmp_path).list_recordings().data == []  # not finalized: unlisted
    await _finish(rec)


async def test_a_broken_disk_never_reaches_the_call(tmp_path: Path) -> None:
    root = tmp_path / "not-a-dir"
    root.write_text("x")
    errors: list[int] = []
    rec = CallRecorder.start(root, "rtc_x", started_at=time.time(), metadata=META,
                             on_error=lambda: errors.append(1))
    rec.caller_audio(bytes(960), 0)
    rec.transcript("note", text="still fine", offset_ms=0)
    rec.close("hangup", {})
    await rec.wait_closed()
    assert errors and rec.errors and "open" in rec.errors[0]


async def test_close_is_idempotent_and_later_calls_are_ignored(tmp_path: Path) -> None:
    rec = _start(tmp_path)
    with pytest.raises(RuntimeError):
        await rec.wait_closed()
    rec.caller_audio(bytes(960), 0)
    rec.close("hangup", {})
    rec.close("other", {})
    rec.caller_audio(bytes(960), 20)
    rec.transcript("note", offset_ms=20)
    await rec.wait_closed()
    await rec.wait_closed()
    await rec.flush()
    meta = json.loads((rec.directory / "metadata.json").read_text())
    assert meta["end_reason"] == "hangup"
    assert "after_close" not in meta["recording"]["dropped"]
    assert rec.dropped["after_close"] == 2


async def test_cancelled_waiter_does_not_break_the_writer(tmp_path: Path) -> None:
    rec = _start(tmp_path)
    rec.caller_audio(bytes(960), 0)
    waiter = asyncio.ensure_future(rec.flush())
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await rec.flush()
    await _finish(rec)
    assert rec.errors == []


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "x" * 101, "a b", "é"])
def test_bad_call_id_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        CallRecorder.start(tmp_path, bad, started_at=time.time(), metadata={})
