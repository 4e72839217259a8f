"""Every log line of a call carries its id; no line carries a secret."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.api.appkeys import CALLS
from gateway.obs.logs import JsonFormatter, _CallIdFilter
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, tone
from tests.waiting import until


async def test_call_log_lines_carry_the_call_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(_CallIdFilter())
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            call_id = peer.location.rsplit("/", 1)[1]  # type: ignore[union-attr]
        finally:
            await peer.close()
        await until(lambda: not gw.app[CALLS], 10, "the call ended")
        ended = [r for r in caplog.records if r.getMessage().startswith("call ended")]
        assert ended and all(getattr(r, "call_id", None) == call_id for r in ended)
    line = json.loads(JsonFormatter().format(ended[0]))
    assert line["call_id"] == call_id and line["msg"].startswith("call ended")
    assert "sk-upstream-secret-never-shown" not in caplog.text
