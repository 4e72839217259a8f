"""``make fuzz``: every harness under atheris (libFuzzer, coverage-guided), then its corpus
replayed under coverage.py over the harness' target modules; a summary printed and written to
``bench/results/fuzz.json``.

    python -m tests.fuzz all [--runs 100000] [--only sdp,stun]
    python -m tests.fuzz run NAME --runs N --corpus DIR --stats FILE   (one atheris run)
    python -m tests.fuzz replay NAME DIR...                           (for coverage)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "results" / "fuzz.json"


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cmd_run(args: argparse.Namespace) -> None:
    import atheris

    with atheris.instrument_imports(include=["gateway", "aiortc", "aioice"]):
        from tests.fuzz.registry import HARNESSES
    logging.disable(logging.CRITICAL)
    h = HARNESSES[args.name]
    corpus = Path(args.corpus)
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(h.seeds):
        (corpus / f"seed-{i}").write_bytes(seed)
    dict_file = corpus.parent / f"{args.name}.dict"
    dict_file.write_text("".join('"' + "".join(f"\\x{b:02x}" for b in w) + '"\n'
                                 for w in h.dictionary))
    stats = Path(args.stats)
    n = 0
    warm = 0

    def one(data: bytes) -> None:
        nonlocal n, warm
        h.one_input(data)
        n += 1
        if n == 2000:
            warm = rss_kb()
        if n % 2000 == 0:
            stats.write_text(json.dumps({"runs": n, "rss_warm_kb": warm, "rss_kb": rss_kb()}))

    argv = [sys.argv[0], f"-runs={args.runs}", "-timeout=10", "-rss_limit_mb=3072",
            "-max_len=16384", "-seed=23", "-print_final_stats=1", str(corpus)]
    if h.dictionary:
        argv.insert(1, f"-dict={dict_file}")
    atheris.Setup(argv, one)
    atheris.Fuzz()


def cmd_replay(args: argparse.Namespace) -> None:
    from tests.fuzz.registry import HARNESSES

    logging.disable(logging.CRITICAL)
    h = HARNESSES[args.name]
    for d in args.dirs:
        for f in sorted(Path(d).iterdir()):
            if f.is_file():
                h.one_input(f.read_bytes())


def _target_paths(targets: tuple[str, ...]) -> list[str]:
    import aioice
    import aiortc

    site = Path(aiortc.__file__).parent.parent
    assert Path(aioice.__file__).parent.parent == site
    return [str(ROOT / t) if t.startswith(("gateway/", "tests/")) else str(site / t)
            for t in targets]


def coverage_of(name: str, corpus: Path, targets: tuple[str, ...], work: Path) -> dict[str, Any]:
    data = work / f"{name}.coverage"
    include = ",".join(_target_paths(targets))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "coverage", "run", "--branch", f"--data-file={data}",
                    f"--include={include}", "-m", "tests.fuzz", "replay", name, str(corpus)],
                   cwd=ROOT, env=env, check=True, timeout=3600)
    report = work / f"{name}.json"
    subprocess.run([sys.executable, "-m", "coverage", "json", f"--data-file={data}",
                    "-o", str(report), f"--include={include}"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=600)
    files = json.loads(report.read_text())["files"]
    out: dict[str, Any] = {}
    tot = {"lines": 0, "covered_lines": 0, "branches": 0, "covered_branches": 0}
    for path, f in files.items():
        s = f["summary"]
        short = re.sub(r"^.*?/(gateway|aiortc|aioice)/", r"\1/", path)
        out[short] = {"line_pct": round(100 * s["covered_lines"] / max(1, s["num_statements"]), 1),
                      "branch_pct": round(100 * s["covered_branches"] / max(1, s["num_branches"]),
                                          1)}
        tot["lines"] += s["num_statements"]
        tot["covered_lines"] += s["covered_lines"]
        tot["branches"] += s["num_branches"]
        tot["covered_branches"] += s["covered_branches"]
    return {"modules": out,
            "line_pct": round(100 * tot["covered_lines"] / max(1, tot["lines"]), 1),
            "branch_pct": round(100 * tot["covered_branches"] / max(1, tot["branches"]), 1)}


def run_one(name: str, runs: int, work: Path) -> dict[str, Any]:
    from tests.fuzz.registry import HARNESSES

    corpus, stats, log = work / name / "corpus", work / name / "stats.json", work / f"{name}.log"
    corpus.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log, "wb") as out:
        rc = subprocess.run([sys.executable, "-m", "tests.fuzz", "run", name, "--runs",
                             str(runs), "--corpus", str(corpus), "--stats", str(stats)],
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=out, stderr=subprocess.STDOUT, timeout=6 * 3600).returncode
    text = log.read_text(errors="replace")
    done = re.search(r"Done (\d+) runs in (\d+) second", text)
    st = json.loads(stats.read_text()) if stats.exists() else {}
    r: dict[str, Any] = {
        "harness": name, "runs": int(done.group(1)) if done else st.get("runs", 0),
        "seconds": round(time.monotonic() - t0, 1), "exit_code": rc,
        "crashes": int("Uncaught Python exception" in text or "ERROR: libFuzzer: deadly" in text
                       or "==ERROR" in text and "timeout" not in text),
        "hangs": int("ERROR: libFuzzer: timeout" in text),
        "out_of_memory": int("out-of-memory" in text),
        "corpus_files": sum(1 for _ in corpus.iterdir()),
        "rss_warm_mb": round(st.get("rss_warm_kb", 0) / 1024, 1),
        "rss_end_mb": round(st.get("rss_kb", 0) / 1024, 1),
    }
    r["rss_growth_mb"] = round(r["rss_end_mb"] - r["rss_warm_mb"], 1)
    if rc == 0:
        r["coverage"] = coverage_of(name, corpus, HARNESSES[name].targets, work)
    else:
        r["log_tail"] = text[-3000:]
    return r


def cmd_all(args: argparse.Namespace) -> int:
    from tests.fuzz.registry import HARNESSES

    names = args.only.split(",") if args.only else sorted(HARNESSES)
    work = Path(args.work or tempfile.mkdtemp(prefix="gw-fuzz-"))
    results = []
    for name in names:
        print(f"fuzz {name}: {args.runs} runs ...", flush=True)
        r = run_one(name, args.runs, work)
        results.append(r)
        cov = r.get("coverage", {})
        print(f"  {r['runs']} runs in {r['seconds']} s, crashes {r['crashes']}, hangs "
              f"{r['hangs']}, RSS {r['rss_warm_mb']} -> {r['rss_end_mb']} MB, coverage lines "
              f"{cov.get('line_pct')} % branches {cov.get('branch_pct')} %", flush=True)
        for mod, c in cov.get("modules", {}).items():
            print(f"    {mod:45s} lines {c['line_pct']:5.1f} %  branches {c['branch_pct']:5.1f} %")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"runs_per_harness": args.runs, "work": str(work),
                               "results": results}, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    bad = [r["harness"] for r in results if r["exit_code"] != 0 or r["runs"] < args.runs]
    if bad:
        print("FAILED:", ", ".join(bad))
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("all")
    a.add_argument("--runs", type=int, default=100_000)
    a.add_argument("--only", default="")
    a.add_argument("--work", default="")
    r = sub.add_parser("run")
    r.add_argument("name")
    r.add_argument("--runs", type=int, required=True)
    r.add_argument("--corpus", required=True)
    r.add_argument("--stats", required=True)
    rp = sub.add_parser("replay")
    rp.add_argument("name")
    rp.add_argument("dirs", nargs="+")
    args = p.parse_args()
    if args.cmd == "run":
        cmd_run(args)
        return 0
    if args.cmd == "replay":
        cmd_replay(args)
        return 0
    return cmd_all(args)


if __name__ == "__main__":
    sys.exit(main())
