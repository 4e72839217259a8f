"""RSS of a gateway process around a UDP flood to an unanswered call's port (issue 23).

Method: one gateway in this process (fake upstream); an offer whose peer never connects is
answered; ~23 MB of RTP-looking datagrams are sent to its media port from a socket that
never did ICE; RSS is read before, right after the flood, and after the call is released.
``python -m bench.udp_flood_rss``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re

from tests.fake_upstream import running_fake
from tests.gateway_fixtures import running_gateway
from tests.test_webrtc_hardening import _post_raw, flood, media_ports, offer_nobody_answers
from tests.waiting import until

#: Datagrams of 1200 bytes (19,000: 22.8 MB, the issue's flood); FLOOD_COUNT=0 for the
#: baseline (the first call's own set-up cost).
COUNT = int(os.environ.get("FLOOD_COUNT", "19000"))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        m = re.search(r"VmRSS:\s+(\d+) kB", f.read())
    assert m
    return int(m.group(1)) / 1024


async def main() -> None:
    async with running_fake() as (_fake, url), running_gateway(url, env={
            "GATEWAY_MEDIA_CONNECT_TIMEOUT_S": "5"}) as gw:
        from gateway.api.appkeys import CALLS

        gc.collect()
        before = rss_mb()
        status, answer = await _post_raw(gw, await offer_nobody_answers())
        assert status == 201
        await asyncio.to_thread(flood, media_ports(answer)[:1], COUNT)
        await asyncio.sleep(0.5)
        during = rss_mb()
        await until(lambda: len(gw.app[CALLS]) == 0, 30, "call released")
        gc.collect()
        after = rss_mb()
        print(f"RSS before {before:.1f} MB, after a 22.8 MB pre-ICE flood {during:.1f} MB, "
              f"after release {after:.1f} MB")


if __name__ == "__main__":
    asyncio.run(main())
