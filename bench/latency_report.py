"""Tables and verdicts of the latency bench, from its results (``--report`` prints them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.latency_stats import summary


def _f(x: Any, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def trio(s: dict[str, Any]) -> str:
    return f"{_f(s['p50'])} / {_f(s['p95'])} / {_f(s['p99'])} ({_f(s['mean'])})"


def matrix_table(runs: list[dict[str, Any]]) -> str:
    head = ("| server | network | direction | markers | lost (network) | one-way p50 / p95 / p99 "
            "(mean) ms | server-added p50 / p95 / p99 (mean) ms | network p50 / p99 ms | "
            "of server-added, mean ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in runs:
        for d, label in (("in", "caller -> upstream"), ("out", "upstream -> caller")):
            x = r[d]
            lost = (f"{x['lost']} ({x['lost_in_network']})" if d == "in" else f"{x['lost']}")
            part = (f"append batching {_f(x['append_wait']['mean'])}, the rest "
                    f"{_f(x['after_batching']['mean'])} (p99 {_f(x['after_batching']['p99'])})"
                    if d == "in" else
                    f"position in delta {_f(x['delta_position']['mean'])}, playout backlog "
                    f"{_f(x['queued_ahead']['mean'])}, tick wait + send "
                    f"{_f(x['tick_wait_and_send']['mean'])} (p99 "
                    f"{_f(x['tick_wait_and_send']['p99'])})")
            lines.append(
                f"| {r['server']} | {r['network']} | {label} | {x['sent']} | {lost} | "
                f"{trio(x['one_way'])} | {trio(x['server'])} | "
                f"{_f(x['network']['p50'])} / {_f(x['network']['p99'])} | "
                f"{part} |")
    return "\n".join(lines)


def soak_table(run: dict[str, Any]) -> str:
    head = ("| minute | in server-added p50 / p99 ms | out server-added p50 / p99 ms | out playout "
            "backlog mean / max ms | in one-way p50 / p99 ms | out one-way p50 / p99 ms | "
            "markers lost in / out | append lateness max ms | gateway RSS MB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in run.get("per_minute", []):
        i, o = row["in"], row["out"]
        lines.append(
            f"| {row['minute']} | {_f(i['server']['p50'])} / {_f(i['server']['p99'])} | "
            f"{_f(o['server']['p50'])} / {_f(o['server']['p99'])} | "
            f"{_f(o['queued_ahead']['mean'])} / {_f(o['queued_ahead']['max'])} | "
            f"{_f(i['one_way']['p50'])} / {_f(i['one_way']['p99'])} | "
            f"{_f(o['one_way']['p50'])} / {_f(o['one_way']['p99'])} | "
            f"{i['lost']} / {o['lost']} | {_f(row['append_lateness']['max'])} | "
            f"{_f(row.get('rss_mb'))} |")
    return "\n".join(lines)


def soak_verdict(run: dict[str, Any]) -> list[str]:
    """First against last full minute."""
    rows = [r for r in run.get("per_minute", []) if r["in"]["sent"] >= 100]
    if len(rows) < 2:
        return []
    a, b = rows[0], rows[-1]
    out = []
    for d in ("in", "out"):
        x, y = a[d]["server"], b[d]["server"]
        out.append(f"{d}: server-added p50 {x['p50']} -> {y['p50']} ms, p99 {x['p99']} -> "
                   f"{y['p99']} ms (minute {a['minute']} -> {b['minute']})")
    out.append(f"gateway RSS {a.get('rss_mb')} -> {b.get('rss_mb')} MB")
    return out


def overload_table(res: dict[str, Any]) -> str:
    head = ("| calls | connected | RSS MB | (RSS - idle) / call MB | MB per added call | RSS "
            "min-max during hold MB | RSS slope 2nd half MB/min | server cores | caller cores | "
            "in % | out % | loop lag p99 ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1),
             f"| 0 | - | {res['idle_rss_mb']} | - | - | - | - | - | - | - | - | - |"]
    for p in res["phases"]:
        mm = p["rss_min_max_mb"] or [None, None]
        lines.append(
            f"| {p['calls']} | {p['connected']} | {p['rss_mb']} | {p['rss_per_call_mb']} | "
            f"{_f(p.get('marginal_mb_per_call'), '.2f')} | "
            f"{_f(mm[0])}-{_f(mm[1])} | {_f(p['rss_slope_second_half_mb_per_min'], '.2f')} | "
            f"{_f(p['server_cores'], '.2f')} | {_f(p['client_cores'], '.2f')} | "
            f"{_f(p['inbound_pct'])} | "
            f"{_f(p['outbound_pct'])} | {_f(p['loop_lag_p99_ms'])} |")
    return "\n".join(lines)


def verdicts(runs: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in runs:
        if r["server"] != "gateway":
            continue
        for d in ("in", "out"):
            s = r[d]["server"]
            if r["condition"] == "clean" and s["p50"] is not None:
                out.append(f"gateway {d} clean: server-added p50 {s['p50']} ms (target <= 30): "
                           f"{'met' if s['p50'] <= 30 else 'NOT met'}")
            if r["condition"] == "loss2" and s["p99"] is not None:
                out.append(f"gateway {d} 2 % loss: server-added p99 {s['p99']} ms (target <= "
                           f"60): {'met' if s['p99'] <= 60 else 'NOT met'}")
                if d == "out":  # what the outbound path adds beyond pacing and the echo's queue
                    own = r["out"]["tick_wait_and_send"]["p99"]
                    out.append(f"gateway out 2 % loss, tick wait + send (without the audio "
                               f"the echo queued ahead and the marker's place in its delta): "
                               f"p99 {own} ms")
    return out



def fill_after_batching(run: dict[str, Any]) -> None:
    """Results written before ``after_batching`` existed: compute it from the marker rows."""
    if "after_batching" in run["in"]:
        return
    vals: list[float | None] = []
    for row in run["markers"]:
        wire_in, recv, offset, chunk = row[4], row[5], row[10], row[11]
        if wire_in is None or recv is None:
            continue
        wait = max(0.0, chunk - 20 * (offset // 20 + 1))
        vals.append((recv - wire_in - wait) / 1000)
    run["in"]["after_batching"] = summary(vals)


def report(path: Path) -> int:
    """Print the tables of a results file again (``--report``)."""
    doc = json.loads(path.read_text())
    for section in ("quick", "matrix"):
        if section in doc:
            runs = doc[section]["runs"]
            for r in runs:
                fill_after_batching(r)
            print(f"\n{section} ({doc[section]['date']}, {doc[section]['command']}):\n")
            print(matrix_table(runs))
            print("\n" + "\n".join(verdicts(runs)))
    if "soak" in doc:
        print(f"\nsoak ({doc['soak']['date']}):\n\n{soak_table(doc['soak'])}")
        print("\n" + "\n".join(doc["soak"].get("verdict", [])))
    if "overload" in doc:
        print(f"\noverload ({doc['overload']['date']}):\n\n{overload_table(doc['overload'])}")
    return 0
