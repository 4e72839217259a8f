"""RecordingStore: listing from the files, integrity, deletion, retention, path safety."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from gateway.recording import (
    InvalidCallId,
    InvalidQuery,
    RecordingInProgress,
    RecordingNotFound,
    RecordingStore,
)

from .conftest import ORDER, ts


def _ids(store: RecordingStore, **kw: object) -> list[str]:
    return [m["call_id"] for m in store.list_recordings(**kw).data]  # type: ignore[arg-type]


def test_list_newest_first_with_filters(root: Path) -> None:
    s = RecordingStore(root)
    assert _ids(s) == ORDER
    assert _ids(s, caller="+15550000001") == ["rtc_d1", "rtc_b1", "rtc_a1"]
    assert _ids(s, caller=" 15550000001") == ["rtc_d1", "rtc_b1", "rtc_a1"]  # '+' as space
    assert _ids(s, agent="support") == ["rtc_c1", "rtc_b1", "rtc_a2"]
    assert _ids(s, start=ts("2025-03-01T12:00:00"), end=ts("2025-03-06T00:00:00")) == [
        "rtc_c1", "rtc_b2", "rtc_b1", "rtc_a2"]
    assert _ids(s, start=ts("2025-03-02T08:00:00"), end=ts("2025-03-02T08:00:01")) == [
        "rtc_b2", "rtc_b1"]
    assert _ids(s, start=ts("2026-01-01T00:00:00")) == []
    assert RecordingStore(root / "nowhere").list_recordings().data == []


def test_pagination_walks_everything_once(root: Path) -> None:
    s = RecordingStore(root)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = s.list_recordings(limit=2, cursor=cursor)
        seen += [m["call_id"] for m in page.data]
        if not page.has_more:
            assert page.next_cursor is None
            break
        cursor = page.next_cursor
    assert seen == ORDER
    page = s.list_recordings(limit=3, agent="sales")
    assert [m["call_id"] for m in page.data] == ["rtc_d1", "rtc_b2", "rtc_a1"]
    assert not page.has_more


@pytest.mark.parametrize("cursor", ["nope", "e30", "WzEsIi4uLyJd"])
def test_bad_cursor_and_limit(root: Path, cursor: str) -> None:
    s = RecordingStore(root)
    with pytest.raises(InvalidQuery):
        s.list_recordings(cursor=cursor)
    with pytest.raises(InvalidQuery):
        s.list_recordings(limit=0)


def test_verify_catches_a_flipped_byte(root: Path) -> None:
    s = RecordingStore(root)
    assert s.verify("rtc_a1") == []
    wav = s.file("rtc_a1", "audio.wav")
    data = bytearray(wav.read_bytes())
    data[5000] ^= 0x01
    wav.write_bytes(bytes(data))
    problems = s.verify("rtc_a1")
    assert len(problems) == 1 and "audio.wav" in problems[0] and "sha256" in problems[0]
    (s.resolve("rtc_b1") / "transcript.jsonl").write_text("{}\n")
    all_ = s.verify_all()
    assert {k for k, v in all_.items() if v} == {"rtc_a1", "rtc_b1"}
    assert len(all_) == len(ORDER)


@pytest.mark.parametrize("bad", ["..", "../secret", "a/b", "", "x" * 101, "rtc_a1\n",
                                 "rtc a1", "%2e%2e", "rtc_a1/../../secret.txt"])
def test_ids_are_validated_before_touching_the_disk(root: Path, bad: str) -> None:
    s = RecordingStore(root)
    with pytest.raises(InvalidCallId):
        s.resolve(bad)
    with pytest.raises(InvalidCallId):
        s.delete(bad, who="t")


def test_unknown_and_symlinked_ids_are_not_found(root: Path, tmp_path: Path) -> None:
    s = RecordingStore(root)
    with pytest.raises(RecordingNotFound):
        s.resolve("rtc_zz")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "metadata.json").write_text("{}")
    os.symlink(outside, root / "2025" / "03" / "01" / "rtc_link")
    with pytest.raises(RecordingNotFound):
        s.resolve("rtc_link")
    with pytest.raises(RecordingNotFound):
        s.file("rtc_a1", "metadata.json")  # only the recorded files are served


def test_unfinished_call_is_in_progress(root: Path) -> None:
    (root / "2025" / "03" / "01" / "rtc_open").mkdir()
    s = RecordingStore(root)
    with pytest.raises(RecordingInProgress):
        s.get("rtc_open")
    assert "rtc_open" not in _ids(s)


def test_delete_is_audit_logged(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = RecordingStore(root)
    with caplog.at_level(logging.INFO, logger="gateway.audit"):
        s.delete("rtc_a2", who="alice@example")
    rec = [r for r in caplog.records if r.name == "gateway.audit"][-1]
    msg = rec.getMessage()
    assert "action=delete_recording" in msg and "call_id=rtc_a2" in msg
    assert "who=alice@example" in msg and "when=20" in msg
    assert rec.audit["who"] == "alice@example"  # type: ignore[attr-defined]
    with pytest.raises(RecordingNotFound):
        s.get("rtc_a2")
    assert "rtc_a2" not in _ids(s)
    assert (root / "2025" / "03" / "01").is_dir()  # rtc_a1 still there


def test_purge_deletes_expired_calls_and_logs_them(root: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    s = RecordingStore(root)
    with caplog.at_level(logging.INFO, logger="gateway.audit"):
        deleted = s.purge(30, now=ts("2025-04-02T00:00:00"))
    assert sorted(deleted) == ["rtc_a1", "rtc_a2", "rtc_b1", "rtc_b2"]  # before 2025-03-03
    assert _ids(s) == ["rtc_d1", "rtc_c1"]
    assert not (root / "2025" / "03" / "01").exists()  # emptied day directory removed
    msgs = [r.getMessage() for r in caplog.records if r.name == "gateway.audit"]
    assert sum("action=delete_recording" in m and "who=retention" in m for m in msgs) == 4
    assert any("action=purge_recordings" in m and "rtc_a1" in m for m in msgs)
    assert s.purge(30, now=ts("2025-04-02T00:00:00")) == []


def test_export_copies_verifiable_files(root: Path, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    from gateway.recording.store import verify_dir

    s = RecordingStore(root)
    with caplog.at_level(logging.INFO, logger="gateway.audit"):
        out = s.export("rtc_b1", tmp_path / "export", who="bob")
    assert sorted(p.name for p in out.iterdir()) == ["audio.wav", "metadata.json",
                                                      "transcript.jsonl"]
    assert verify_dir(out) == []
    assert any("action=export_recording" in r.getMessage() for r in caplog.records)
