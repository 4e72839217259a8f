"""Resilience timings (issue 9): resume after a dropped peer, and an upstream rollover.

Resume: a client peer in its own process is killed (RTP just stops); measured from the
moment the gateway holds the call (drop detected) to agent audio flowing again at a new peer
that rejoins at once with the resume token (``POST /v1/realtime/calls``, ``rs_…``), the
upstream speaking continuously. Rollover: the upstream connection is replaced between turns
(as before the 60-minute limit); measured: time to the new, re-seeded session, and caller
audio lost to the upstream across the switch. Real aiortc peers, gateway in this process,
the scripted GA upstream. Run: python -m bench.resume --trials 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import numpy as np

from gateway.api.appkeys import CALLS
from gateway.call.continuity import UpstreamKeeper
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, tone
from tests.test_resume import ENV, start_doomed_peer
from tests.waiting import until

OUT = Path(__file__).parent / "results" / "resume.json"


async def resume_trial() -> dict[str, float]:
    async with running_fake() as (fake, url), running_gateway(url, env=ENV) as gw:
        calls_url = f"{gw.base}/v1/realtime/calls"
        proc, created = await start_doomed_peer(calls_url, await gw.mint())
        await until(lambda: len(fake.conn.audio) >= 48 * 200, 10, "media flowing")
        proc.kill()
        await proc.wait()
        call = gw.app[CALLS].get(created["call_id"])
        await until(lambda: call.suspended, 10, "drop detected")  # type: ignore[union-attr]
        t0 = time.monotonic()
        t = np.arange(24000 * 3) / 24000
        fake.say((8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16), "back", speed=1.0)
        peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
        try:
            await peer.connect(gw.http, calls_url, created["resume_token"])
            t_answer = time.monotonic() - t0
            await until(lambda: any(np.abs(a).max() > 3000 for _, a in peer.received),
                        10, "agent audio at the new peer", interval_s=0.005)
            first = next(ts for ts, a in peer.received if np.abs(a).max() > 3000)
        finally:
            await peer.close()
        return {"answer_ms": t_answer * 1000, "audio_ms": (first - t0) * 1000}


async def rollover_trial() -> dict[str, float]:
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            await peer.next_event("session.created")
            await until(lambda: len(fake.conn.audio) >= 48 * 1000, 10, "media flowing")
            (call,) = list(gw.app[CALLS])
            keeper = next(h.__self__ for h in call.hooks.on_close  # type: ignore[attr-defined]
                          if isinstance(getattr(h, "__self__", None), UpstreamKeeper))
            a0 = len(fake.conn.audio)
            t0 = time.monotonic()
            keeper._roll()  # noqa: SLF001 - what the 55-minute timer calls
            await until(lambda: len(fake.conns) == 2 and len(fake.conns[1].audio) > 0, 10,
                        "audio reaches the new upstream session")
            switch_ms = (time.monotonic() - t0) * 1000
            await asyncio.sleep(1.0)
            elapsed_ms = (time.monotonic() - t0) * 1000
            old, new = fake.conns
            arrived_ms = (len(old.audio) - a0 + len(new.audio)) / 48
            # Up to one 40 ms append may still be buffered in the gateway: not lost.
            lost_ms = max(0.0, elapsed_ms - arrived_ms - 40)
        finally:
            await peer.close()
        return {"switch_ms": switch_ms, "caller_audio_lost_ms": lost_ms}


async def run(trials: int) -> dict[str, object]:
    resumes = [await resume_trial() for _ in range(trials)]
    rolls = [await rollover_trial() for _ in range(trials)]
    return {
        "trials": trials,
        "resume_answer_ms_p50": statistics.median(r["answer_ms"] for r in resumes),
        "resume_to_agent_audio_ms_p50": statistics.median(r["audio_ms"] for r in resumes),
        "rollover_switch_ms_p50": statistics.median(r["switch_ms"] for r in rolls),
        "rollover_caller_audio_lost_ms_p50": statistics.median(
            r["caller_audio_lost_ms"] for r in rolls),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    res = asyncio.run(run(ap.parse_args().trials))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
