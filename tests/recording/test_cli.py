"""``python -m gateway recordings ...`` through ``cli.main`` (and once as a real process)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from gateway.recording import RecordingStore
from gateway.recording.cli import main

from .conftest import ORDER


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_list(root: Path) -> None:
    code, out = _run("list", "--root", str(root))
    assert code == 0
    assert [line.split()[1] for line in out.splitlines()] == ORDER
    code, out = _run("list", "--root", str(root), "--json", "--agent", "sales", "--limit", "2")
    rows = [json.loads(x) for x in out.splitlines() if not x.startswith("#")]
    assert [r["call_id"] for r in rows] == ["rtc_d1", "rtc_b2"]
    cursor = out.splitlines()[-1].split("--cursor ")[1]
    code, out = _run("list", "--root", str(root), "--agent", "sales", "--cursor", cursor)
    assert [line.split()[1] for line in out.splitlines()] == ["rtc_a1"]
    code, out = _run("list", "--root", str(root), "--from", "2025-03-02", "--to",
                     "2025-03-03T00:00:00Z")
    assert [line.split()[1] for line in out.splitlines()] == ["rtc_b2", "rtc_b1"]


def test_verify_exit_codes(root: Path) -> None:
    assert _run("verify", "--root", str(root)) == (0, f"verified {len(ORDER)} call(s): "
                                                      f"{len(ORDER)} intact, 0 altered\n")
    wav = RecordingStore(root).file("rtc_b2", "audio.wav")
    data = bytearray(wav.read_bytes())
    data[-1] ^= 0x80
    wav.write_bytes(bytes(data))
    code, out = _run("verify", "--root", str(root))
    assert code == 1
    assert "MISMATCH rtc_b2/audio.wav: sha256" in out and "1 altered" in out
    assert _run("verify", "rtc_a1", "--root", str(root))[0] == 0
    assert _run("verify", "rtc_b2", "--root", str(root))[0] == 1
    assert _run("verify", "rtc_zz", "--root", str(root))[0] == 3
    assert _run("verify", "../x", "--root", str(root))[0] == 3


def test_export_and_purge(root: Path, tmp_path: Path) -> None:
    code, out = _run("export", "rtc_d1", "--out", str(tmp_path / "out"), "--root", str(root))
    assert code == 0 and "exported rtc_d1" in out
    copied = tmp_path / "out" / "rtc_d1"
    assert (copied / "audio.wav").read_bytes() == \
        RecordingStore(root).file("rtc_d1", "audio.wav").read_bytes()
    code, out = _run("purge", "--older-than-days", "36500", "--root", str(root))
    assert code == 0 and out.endswith("purged 0 call(s)\n")
    code, out = _run("purge", "--older-than-days", "0", "--root", str(root))
    deleted = [line.split()[1] for line in out.splitlines() if line.startswith("deleted ")]
    assert code == 0 and sorted(deleted) == sorted(ORDER)
    assert RecordingStore(root).list_recordings().data == []


def test_usage_errors() -> None:
    assert _run()[0] == 2
    assert _run("frobnicate")[0] == 2
    assert _run("export", "rtc_a1")[0] == 2  # --out required


def test_as_a_process(root: Path) -> None:
    """The module the lead's top-level CLI delegates to also runs on its own."""
    code = ("import sys; from gateway.recording.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    p = subprocess.run([sys.executable, "-c", code, "verify", "--root", str(root)],
                       capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 0 and "0 altered" in p.stdout
