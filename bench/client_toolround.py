"""What the gateway adds to a client-side tool round (issue 18).

A WebSocket client declares its own ``schedule_appointment`` tool and asks (a text message,
``response.create``) for an appointment; the local engine answers with a function call; the
client answers it with ``function_call_output`` + ``response.create`` at once. Timed at the
client: ``response.function_call_arguments.done`` seen -> first ``response.output_audio.delta``
of the follow-up response (the client sends its output once the call's ``response.done`` is
in, as OpenAI requires: one response at a time). The same client does the same round
directly against the engine's ``/v1/realtime`` and through a gateway process in front of that
engine, rounds interleaved
(gateway, direct, gateway, ...) in one run so drift hits both alike; medians per path and the
difference. The gateway's profile has no server tools (the tool is the client's alone).

    python -m bench.client_toolround --rounds 25
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

from bench.calls import (
    API_KEY,
    RESULTS,
    ROOT,
    free_port,
    machine_info,
    server_command,
    stop,
    wait_http,
)

Json = dict[str, Any]
TOOL: Json = {"type": "function", "name": "schedule_appointment",
              "description": "Book an appointment in the app's own calendar.",
              "parameters": {"type": "object", "properties": {
                  "date": {"type": "string"}, "time": {"type": "string"}}}}
ASK = "Schedule an appointment for Tuesday at three PM."
#: A gateway profile without server tools: the client's tool is the only one. The call's
#: guards (idle prompt and hang-up, dead-mic prompt) are off: this client sends no audio, and
#: a guard's own response would land in the middle of a timed round.
TOML = """
[guards]
idle_prompt_s = 3600
idle_hangup_s = 3600

[profiles.default]
tools = []
ask_on_dead_mic = false
"""


async def _next(ws: Any, etype: str, timeout_s: float = 20.0) -> tuple[Json, float]:
    async with asyncio.timeout(timeout_s):
        while True:
            ev = json.loads(await ws.recv())
            if ev.get("type") == etype:
                return ev, time.perf_counter()
            if ev.get("type") == "error":
                raise RuntimeError(f"error while waiting for {etype}: {ev['error']}")


async def _session(url: str) -> Any:
    ws = await websockets.connect(url, additional_headers={
        "Authorization": f"Bearer {API_KEY}"}, max_size=None)
    await _next(ws, "session.created")
    await ws.send(json.dumps({"type": "session.update", "session": {
        "type": "realtime", "tools": [TOOL], "tool_choice": "auto",
        "audio": {"input": {"turn_detection": None}}}}))
    await _next(ws, "session.updated")
    return ws


async def _round(ws: Any, i: int) -> float:
    """One client tool round; ms from the call's arguments to the answer's first audio."""
    await ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": ASK}]}}))
    await ws.send(json.dumps({"type": "response.create"}))
    call, t0 = await _next(ws, "response.function_call_arguments.done")
    await _next(ws, "response.done")  # as at OpenAI: one response at a time
    await ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": call["call_id"],
        "output": json.dumps({"status": "booked", "date": "2026-12-08", "time": "15:00",
                              "confirmation": f"B{i:04d}"})}}))
    await ws.send(json.dumps({"type": "response.create"}))
    _, t1 = await _next(ws, "response.output_audio.delta")
    # Let the answer finish so the next round starts on an idle conversation.
    await _next(ws, "response.done", 60)
    return (t1 - t0) * 1000


async def measure(engine: str, gateway: str, rounds: int) -> dict[str, Any]:
    paths = {"direct": f"{engine}?model=gpt-realtime",
             "gateway": f"{gateway}?model=gpt-realtime"}
    conns = {name: await _session(url) for name, url in paths.items()}
    times: dict[str, list[float]] = {name: [] for name in paths}
    try:
        for ws in conns.values():  # one warm-up round each, not counted
            await _round(ws, 9999)
        for i in range(rounds):
            for name in (("gateway", "direct") if i % 2 == 0 else ("direct", "gateway")):
                times[name].append(await _round(conns[name], i))
    finally:
        for ws in conns.values():
            with contextlib.suppress(Exception):
                await ws.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"rounds": rounds, "median_ms": med,
            "p90_ms": {k: sorted(v)[int(0.9 * (len(v) - 1))] for k, v in times.items()},
            "added_ms_median": med["gateway"] - med["direct"],
            "added_ms_median_of_pairs": statistics.median(
                g - d for g, d in zip(times["gateway"], times["direct"], strict=True)),
            "samples_ms": times}


def run(rounds: int) -> dict[str, Any]:
    logdir = Path(tempfile.mkdtemp(prefix="bench-client-toolround-"))
    started: list[subprocess.Popen[bytes]] = []
    with open(logdir / "bench.log", "wb") as log:
        try:
            eport, gport = free_port(), free_port()
            engine = f"ws://127.0.0.1:{eport}/v1/realtime"
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            eng = subprocess.Popen([sys.executable, "-m", "gateway", "localrt", "--host",
                                    "127.0.0.1", "--port", str(eport)], cwd=ROOT, env=env,
                                   stdout=log, stderr=log)
            started.append(eng)
            toml = logdir / "gateway.toml"
            toml.write_text(TOML)
            cmd, srv_env, ready = server_command("gateway", gport, engine, {
                "OPENAI_API_KEY": ""})
            srv = subprocess.Popen([*cmd, "--config", str(toml)], cwd=logdir, env=srv_env,
                                   stdout=log, stderr=log)
            started.append(srv)
            wait_http(f"http://127.0.0.1:{gport}{ready}", srv, 60)
            _wait_engine(eport, eng, 120)
            return asyncio.run(measure(engine, f"ws://127.0.0.1:{gport}/v1/realtime", rounds))
        finally:
            for p in reversed(started):
                stop(p)


def _wait_engine(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the local engine exited")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise RuntimeError("the local engine did not listen")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.client_toolround", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=25)
    p.add_argument("--out", type=Path, default=RESULTS / "client_toolround.json")
    args = p.parse_args(argv)
    res = run(args.rounds)
    doc = {"benchmark": "client_toolround",
           "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
           "machine": machine_info(), **res}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k != "samples_ms"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
