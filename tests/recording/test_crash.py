"""``kill -9`` mid-call, then ``recover``: at most the last second lost, files consistent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gateway.audio.formats import SAMPLE_RATE
from gateway.recording import RecordingStore, recover

from .signals import chirp, ncc_peak, read_wav

CHILD = Path(__file__).with_name("crash_child.py")
MS = SAMPLE_RATE // 1000


@pytest.mark.parametrize("kill_at_ms", [2600, 2980])  # after a flush; just before the next
def test_kill_9_mid_call_then_recover(tmp_path: Path, kill_at_ms: float) -> None:
    proc = subprocess.Popen([sys.executable, str(CHILD), str(tmp_path), "rtc_crash"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    fed = 0.0
    markers: list[float] = []
    checked_live = False
    try:
        for line in proc.stdout:
            _, fed_s, _, marker = line.split()
            fed = float(fed_s)
            if marker != "-":
                markers.append(float(marker))
            if fed >= 1000 and not checked_live:
                # mid-call, the live writer's lock keeps recovery (of any process) away
                assert recover(tmp_path, min_age_s=0) == []
                checked_live = True
            if fed >= kill_at_ms:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    store = RecordingStore(tmp_path)
    assert store.list_recordings().data == []  # unfinished: not listed

    assert recover(tmp_path) == ["rtc_crash"]
    assert recover(tmp_path) == []  # idempotent

    call = store.resolve("rtc_crash")
    meta = json.loads((call / "metadata.json").read_text())
    assert meta["end_reason"] == "gateway_crash"
    assert meta["caller"] == "+15550002222" and meta["transport"] == "twilio"
    assert meta["recording"]["recovered"] is True
    assert not (call / ".recording.json").exists()

    left, right = read_wav(call / "audio.wav")  # the header matches the data again
    kept_ms = len(left) / MS
    assert kept_ms >= fed - 1000, (kept_ms, fed)  # lost at most the last second
    print(f"kill -9 after {fed:.0f} ms fed: {kept_ms:.0f} ms kept, {fed - kept_ms:.0f} ms lost")
    assert abs(meta["audio"]["duration_s"] * 1000 - kept_ms) < 1
    assert meta["duration_s"] * 1000 >= kept_ms
    # what was kept is in place: every caller marker where it was given
    ref = chirp(20, 400, 6000)
    found = [m for m in markers if m * MS + len(ref) <= len(left)]
    assert len(found) >= 3
    for m in found:
        lag, peak = ncc_peak(left, ref, round(m * MS), search=50 * MS)
        assert peak >= 0.9 and abs(lag) <= 20 * MS, (m, lag, peak)
    assert right.any()  # the agent's tone burst at 1.0-1.5 s
    assert 0.4 <= meta["audio"]["agent_seconds"] <= 0.6

    lines = [json.loads(x) for x in (call / "transcript.jsonl").read_text().splitlines()]
    assert lines and all(x["speaker"] == "caller" for x in lines)

    # the Opus copy was re-encoded from the repaired WAV
    import av

    with av.open(str(call / "audio.opus")) as c:
        n = sum(fr.samples for fr in c.decode(audio=0))
        rate = c.streams.audio[0].rate
    assert abs(n / rate - kept_ms / 1000) < 0.03

    assert store.verify("rtc_crash") == []
    assert store.list_recordings().data[0]["call_id"] == "rtc_crash"


def test_recover_leaves_finalized_and_young_unmarked_dirs_alone(tmp_path: Path) -> None:
    young = tmp_path / "2025" / "01" / "02" / "rtc_young"
    young.mkdir(parents=True)
    assert recover(tmp_path) == []  # may be a writer between mkdir and its lock
    assert recover(tmp_path, min_age_s=0) == ["rtc_young"]
    meta = json.loads((young / "metadata.json").read_text())
    assert meta["end_reason"] == "gateway_crash" and meta["audio"]["duration_s"] == 0
    assert np.array_equal(read_wav(young / "audio.wav")[0], np.zeros(0, np.int16))


def test_recovered_duration_is_the_calls_not_the_time_until_recovery(tmp_path: Path) -> None:
    """Recovery an hour after the crash: ``duration_s`` is still when the call last wrote."""
    proc = subprocess.Popen([sys.executable, str(CHILD), str(tmp_path), "rtc_late"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if float(line.split()[1]) >= 1500:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    (marker,) = tmp_path.rglob(".recording.json")
    call = marker.parent
    # As if the gateway had crashed an hour ago and only now restarted.
    info = json.loads(marker.read_text())
    info["started_at_unix"] = float(info["started_at_unix"]) - 3600
    marker.write_text(json.dumps(info))
    for f in call.iterdir():
        st = f.stat()
        os.utime(f, (st.st_atime - 3600, st.st_mtime - 3600))
    assert recover(tmp_path, min_age_s=0) == ["rtc_late"]
    meta = json.loads((call / "metadata.json").read_text())
    audio_s = meta["audio"]["duration_s"]
    assert audio_s > 0.5
    assert audio_s <= meta["duration_s"] < audio_s + 5, meta["duration_s"]
