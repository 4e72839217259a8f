"""A client peer in its own process, so a test can kill it like a vanished browser.

Usage: python -m tests.peer_process <calls URL> <token>
Prints the gateway.call.created event as one JSON line, then keeps the call up.
"""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp

from tests.peers import ClientPeer, PcmSourceTrack, tone


async def main(url: str, token: str) -> None:
    peer = ClientPeer(PcmSourceTrack(tone(300, -25)))
    async with aiohttp.ClientSession() as http:
        await peer.connect(http, url, token)
        created = await peer.next_event("gateway.call.created")
        print(json.dumps(created), flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
