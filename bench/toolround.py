"""The gateway's own overhead per tool round (issue 5).

The scripted upstream ends a response with a ``lookup_customer`` call; the gateway runs the
built-in SQLite tool and answers with the output and a ``response.create``. Measured at the
upstream: ``response.done`` sent -> ``response.create`` received, minus the tool's own time
(the gateway's ``gateway_tool_duration_seconds``), over N rounds. Real parts: an aiortc client
peer, the gateway in this process, the GA-validated scripted upstream.
Run: python -m bench.toolround --rounds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from gateway.api.appkeys import METRICS
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, tone
from tests.waiting import until

OUT = Path(__file__).parent / "results" / "toolround.json"


async def run(rounds: int) -> dict[str, float]:
    totals: list[float] = []
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        peer = ClientPeer(PcmSourceTrack(tone(300, -40)))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            await peer.next_event("session.created")
            c = fake.conn
            hist = gw.app[METRICS].tool_duration.labels("lookup_customer")
            for i in range(rounds):
                rid, iid, cid = f"resp_b{i}", f"item_b{i}", f"call_b{i}"
                item = {"id": iid, "type": "function_call", "name": "lookup_customer",
                        "call_id": cid, "arguments": json.dumps({"account_id": "12345"}),
                        "status": "completed"}
                await c.send({"type": "response.created", "response": {
                    "id": rid, "object": "realtime.response", "status": "in_progress",
                    "output": []}})
                await c.send({"type": "response.output_item.added", "response_id": rid,
                              "output_index": 0, "item": dict(item, arguments="",
                                                              status="in_progress")})
                before = len([e for e in c.received if e["type"] == "response.create"])
                t0 = time.perf_counter()
                await c.send({"type": "response.done", "response": {
                    "id": rid, "object": "realtime.response", "status": "completed",
                    "output": [item]}})
                await until(lambda b=before: len(
                    [e for e in c.received if e["type"] == "response.create"]) > b,
                    5, "the follow-up response.create", interval_s=0.0005)
                totals.append((time.perf_counter() - t0) * 1000)
            tool_ms = hist._sum.get() / rounds * 1000  # noqa: SLF001 - read the metric
        finally:
            await peer.close()
    return {"rounds": rounds, "round_ms_p50": statistics.median(totals),
            "round_ms_max": max(totals), "tool_ms_mean": tool_ms,
            "overhead_ms_p50": statistics.median(totals) - tool_ms}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    res = asyncio.run(run(ap.parse_args().rounds))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
