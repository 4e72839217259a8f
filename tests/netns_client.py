"""An aiortc caller for tests/test_netns.py, run inside the client namespace.

``python -m tests.netns_client --base http://<announced>:<port> --api-key K [--exhaust]``

It waits for the gateway to be ready, mints a token (``client_secrets``), builds its peer
with the ``ice_servers`` of that response (as voice-agent.js does), posts its offer, sends a
440 Hz tone and counts the frames it hears back (the echo upstream returns the caller's own
audio, so loud frames prove both directions). It prints one JSON object on stdout.

``--exhaust``: hold one call, try a second one (expected: 503), hang up the first, then try
a third (expected to connect once the port is released).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import Any

import aiohttp
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from tests.peers import PcmSourceTrack, dominant_freq, tone

TONE_HZ = 440.0


class Caller:
    def __init__(self, ice_servers: list[dict[str, Any]]) -> None:
        servers = [RTCIceServer(urls=s["urls"], username=s.get("username"),
                                credential=s.get("credential")) for s in ice_servers]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.source = PcmSourceTrack(tone(TONE_HZ, -20.0))
        self.pc.addTrack(self.source)
        self.channel = self.pc.createDataChannel("oai-events")
        self.opened = asyncio.Event()
        self.channel.on("open", self.opened.set)
        self.frames = 0
        self.loud: list[np.ndarray[Any, Any]] = []
        self.events: list[str] = []
        self.channel.on("message", lambda m: self.events.append(json.loads(m)["type"]))
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", lambda t: self._tasks.append(asyncio.ensure_future(self._pump(t))))

    async def _pump(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                f = await track.recv()
                a = f.to_ndarray().reshape(-1)[0::2].astype(np.float64)  # type: ignore[union-attr]
                self.frames += 1
                if np.sqrt(np.mean(a * a)) > 32768 * 10 ** (-40 / 20):
                    self.loud.append(a)

    async def call(self, http: aiohttp.ClientSession, base: str, token: str
                   ) -> tuple[int, dict[str, str], str]:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with http.post(f"{base}/v1/realtime/calls", data=self.pc.localDescription.sdp,
                             headers={"Authorization": f"Bearer {token}",
                                      "Content-Type": "application/sdp"}) as r:
            body = await r.text()
            if r.status == 201:
                await self.pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
            return r.status, dict(r.headers), body

    async def connected(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self.opened.wait()
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        self.source.stop()
        await self.pc.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def mint(http: aiohttp.ClientSession, base: str, api_key: str) -> dict[str, Any]:
    async with http.post(f"{base}/v1/realtime/client_secrets",
                         json={"session": {"type": "realtime", "model": "gpt-realtime"}},
                         headers={"Authorization": f"Bearer {api_key}"}) as r:
        data: dict[str, Any] = await r.json()
        assert r.status == 200, data
        return data


async def wait_ready(http: aiohttp.ClientSession, base: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with http.get(f"{base}/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the gateway never became ready")
        await asyncio.sleep(0.1)


async def pair_metrics(http: aiohttp.ClientSession, base: str) -> list[str]:
    async with http.get(f"{base}/metrics") as r:
        text = await r.text()
    return [line for line in text.splitlines()
            if line.startswith(("gateway_webrtc_candidate_pairs_total",
                                "gateway_call_setup_failures_total"))]


async def one_call(http: aiohttp.ClientSession, args: argparse.Namespace) -> dict[str, Any]:
    grant = await mint(http, args.base, args.api_key)
    caller = Caller(grant.get("ice_servers", []))
    out: dict[str, Any] = {"ice_servers": grant.get("ice_servers")}
    try:
        started = time.monotonic()
        status, _, body = await caller.call(http, args.base, grant["value"])
        out["status"] = status
        out["answer"] = body if status == 201 else None
        out["connected"] = status == 201 and await caller.connected(args.connect_timeout)
        out["connect_s"] = round(time.monotonic() - started, 3)
        if out["connected"]:
            await asyncio.sleep(args.seconds)
        out["frames"] = caller.frames
        out["loud_frames"] = len(caller.loud)
        if len(caller.loud) >= 25:
            out["heard_hz"] = dominant_freq(
                np.concatenate(caller.loud[-25:]).astype(np.int16), 48_000)
        out["events"] = sorted(set(caller.events))
    finally:
        await caller.close()
    return out


async def exhaust(http: aiohttp.ClientSession, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    first = Caller([])
    try:
        status, _, _ = await first.call(http, args.base,
                                        (await mint(http, args.base, args.api_key))["value"])
        out["first"] = {"status": status,
                        "connected": status == 201 and await first.connected(args.connect_timeout)}
        second = Caller([])
        try:
            status, headers, body = await second.call(
                http, args.base, (await mint(http, args.base, args.api_key))["value"])
            out["second"] = {"status": status, "retry_after": headers.get("Retry-After"),
                             "body": json.loads(body) if status != 201 else None}
        finally:
            await second.close()
    finally:
        await first.close()
    # The first call ends when its peer closes; its port goes back to the range. Until it has,
    # a call is refused as the second was (counted: each refusal is a setup failure too).
    deadline = time.monotonic() + 10
    out["third_refused"] = 0
    while True:
        third = Caller([])
        try:
            status, _, _ = await third.call(
                http, args.base, (await mint(http, args.base, args.api_key))["value"])
            if status == 201 or time.monotonic() > deadline:
                out["third"] = {"status": status, "connected": status == 201 and
                                await third.connected(args.connect_timeout)}
                break
            out["third_refused"] += status == 503
        finally:
            await third.close()
        await asyncio.sleep(0.2)
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        await wait_ready(http, args.base, args.ready_timeout)
        out = await (exhaust(http, args) if args.exhaust else one_call(http, args))
        await asyncio.sleep(0.3)  # let the gateway see the hang-up before reading metrics
        out["metrics"] = await pair_metrics(http, args.base)
        return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.netns_client")
    p.add_argument("--base", required=True)
    p.add_argument("--api-key", required=True)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--connect-timeout", type=float, default=8.0)
    p.add_argument("--ready-timeout", type=float, default=30.0)
    p.add_argument("--exhaust", action="store_true")
    args = p.parse_args()
    print(json.dumps(asyncio.run(main_async(args))), flush=True)


if __name__ == "__main__":
    main()
