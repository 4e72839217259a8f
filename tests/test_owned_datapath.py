"""The owned datapath (media.datapath = "owned"): the media clock, one call's RTP/RTCP through
real libsrtp sessions, and a real aiortc peer through the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from pylibsrtp import Policy, Session

from gateway.api.appkeys import CALLS
from gateway.audio.formats import FRAME_BYTES
from gateway.legs.datapath import TICKS, OwnedDatapath
from gateway.legs.inbound import InboundOpus
from gateway.legs.media_clock import MediaClock
from gateway.legs.opus_out import VoiceOpusEncoder
from gateway.legs.playout import Playout, QueuedFrame
from gateway.legs.rtcp import Nack, SenderReport, build_rr, parse_rtcp
from gateway.legs.rtp import MID_URI, RtpWriter, parse_rtp
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, tone
from tests.waiting import until

# -- the clock ------------------------------------------------------------------------------


class Slot:
    def __init__(self) -> None:
        self.ticks: list[float] = []
        self.skipped = 0
        self.reports = 0

    def tick(self) -> None:
        self.ticks.append(time.monotonic())

    def skip(self, slots: int) -> None:
        self.skipped += slots

    def rtcp(self) -> None:
        self.reports += 1


def clock_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "media-clock"]


async def test_one_task_ticks_every_call_in_the_same_pass_and_ends_with_the_last() -> None:
    clock = MediaClock()
    a, b = Slot(), Slot()
    clock.add(a)
    clock.add(b)
    assert len(clock_tasks()) == 1
    await until(lambda: len(b.ticks) >= 60, 10, "60 passes")
    n = min(len(a.ticks), len(b.ticks))
    # Both calls are served in each pass: the same instant, one wake-up.
    assert all(abs(x - y) < 0.005 for x, y in zip(a.ticks[:n], b.ticks[:n], strict=True))
    assert a.reports >= 1 and b.reports >= 1  # one RTCP turn a second each
    await clock.remove(a)
    assert len(clock_tasks()) == 1  # b still on it
    await clock.remove(b)
    assert not clock_tasks()


async def test_a_stall_skips_the_slots_that_went_by() -> None:
    clock = MediaClock()
    s = Slot()
    clock.add(s)
    await until(lambda: len(s.ticks) >= 3, 10, "three passes")
    time.sleep(0.5)  # noqa: ASYNC251  # a stalled loop on purpose: ~25 slots go by
    before = len(s.ticks)
    await until(lambda: len(s.ticks) > before, 10, "the pass after the stall")
    assert s.skipped >= 15  # the slots were skipped, not burst out
    await clock.remove(s)


async def test_a_failing_slot_is_taken_off_and_the_others_keep_their_clock() -> None:
    class Broken(Slot):
        def tick(self) -> None:
            raise RuntimeError("a bug in one call")

    clock = MediaClock()
    bad, good = Broken(), Slot()
    clock.add(bad)
    clock.add(good)
    await until(lambda: len(good.ticks) >= 5, 10, "five passes of the good slot")
    assert len(clock) == 1 and clock.failures == 1
    await clock.remove(good)
    await clock.remove(bad)  # already off: harmless


# -- one call's datapath with real SRTP -----------------------------------------------------

KEY_GW, KEY_PEER = bytes(range(30)), bytes(range(30, 60))


def session(key: bytes, outbound: bool) -> Session:
    policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND if outbound
                    else Policy.SSRC_ANY_INBOUND)
    policy.allow_repeat_tx = True  # as aiortc keys them: a NACKed packet goes out again
    policy.window_size = 1024
    return Session(policy)


class FakeConnection:
    """An aioice connection as the datapath sees it: its selected pair and its DTLS path."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.to_aiortc: list[bytes] = []
        sock = SimpleNamespace(sendto=lambda data, addr: self.sent.append(data))
        self._nominated = {1: SimpleNamespace(protocol=SimpleNamespace(transport=sock),
                                              remote_addr=("192.0.2.1", 5000))}

    def data_received(self, data: bytes, component: int) -> None:
        self.to_aiortc.append(data)


class FakeClock:
    def __init__(self) -> None:
        self.slots: list[object] = []

    def add(self, slot: object) -> None:
        self.slots.append(slot)

    async def remove(self, slot: object) -> None:
        if slot in self.slots:
            self.slots.remove(slot)


@pytest.fixture
async def call() -> Any:
    conn = FakeConnection()
    dtls = SimpleNamespace(transport=SimpleNamespace(_connection=conn),
                           _rx_srtp=session(KEY_PEER, False), _tx_srtp=session(KEY_GW, True))
    playout = Playout(120)
    frames: list[tuple[QueuedFrame | None, float]] = []
    pcm: list[np.ndarray[Any, Any]] = []
    clock = FakeClock()
    dp = OwnedDatapath(playout, lambda f, ms: frames.append((f, ms)), VoiceOpusEncoder(),
                       InboundOpus(pcm.append), clock=cast(MediaClock, clock))
    transceiver = SimpleNamespace(sender=SimpleNamespace(_ssrc=0x5EED, transport=dtls),
                                  receiver=SimpleNamespace(transport=dtls))
    dp.attach(cast(Any, transceiver))
    params = SimpleNamespace(rtcp=SimpleNamespace(cname="gw"), muxId="0",
                             headerExtensions=[SimpleNamespace(id=1, uri=MID_URI)],
                             codecs=[SimpleNamespace(payloadType=111)])
    await transceiver.sender.send(params)  # what aiortc calls once DTLS is up
    await transceiver.receiver.receive(params)
    assert clock.slots == [dp] and dp.running
    peer_rx, peer_tx = session(KEY_GW, False), session(KEY_PEER, True)
    yield SimpleNamespace(dp=dp, conn=conn, playout=playout, frames=frames, pcm=pcm,
                          peer_rx=peer_rx, peer_tx=peer_tx, clock=clock)
    await dp.stop()


async def test_agent_frames_go_out_as_rtp_with_the_played_clock(call: Any) -> None:
    call.playout.push(bytes(FRAME_BYTES) * 3, "item_1", "resp_1")
    for _ in range(4):
        call.dp.tick()
    packets = [call.peer_rx.unprotect(p) for p in call.conn.sent]
    heads = [parse_rtp(p)[:4] for p in packets]
    assert [h[0] for h in heads] == [111] * 4 and {h[3] for h in heads} == {0x5EED}
    assert [(h[1] - heads[0][1]) & 0xFFFF for h in heads] == [0, 1, 2, 3]
    assert [(h[2] - heads[0][2]) & 0xFFFFFFFF for h in heads] == [0, TICKS, 2 * TICKS,
                                                                 3 * TICKS]
    assert packets[0][12:20] == bytes.fromhex("bede0001 10300000")  # mid "0"
    assert [ms for _, ms in call.frames] == [0, 20, 40, 60]
    assert [f.item_id if f else None for f, _ in call.frames] == ["item_1"] * 3 + [None]
    assert call.playout.played_ms["item_1"] == 60
    call.dp.skip(10)  # a stall: the RTP clock jumps with the slots
    call.dp.tick()
    last = parse_rtp(call.peer_rx.unprotect(call.conn.sent[-1]))
    assert (last[2] - heads[0][2]) & 0xFFFFFFFF == 14 * TICKS and call.frames[-1][1] == 280


async def test_a_nack_is_answered_with_the_same_packet(call: Any) -> None:
    for _ in range(3):
        call.dp.tick()
    originals = [call.peer_rx.unprotect(p) for p in call.conn.sent]
    seq = parse_rtp(originals[1])[1]
    nack = bytes.fromhex("81cd0003 00000001 00005eed") + seq.to_bytes(2, "big") + b"\x00\x00"
    call.dp._on_datagram(call.peer_tx.protect_rtcp(nack), 1)
    assert call.dp.nacks == 1 and call.dp.retransmitted == 1
    # (a fresh receiver: the one that took the original would call the copy a replay)
    assert session(KEY_GW, False).unprotect(call.conn.sent[-1]) == originals[1]
    assert parse_rtcp(nack) == [Nack(1, 0x5EED, [seq])]


async def test_caller_rtp_is_decoded_counted_and_reported(call: Any) -> None:
    enc = VoiceOpusEncoder()
    w = RtpWriter(111, 0xCA11, seq=65530)
    t = np.arange(480) / 24000
    voice = (6000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    for i in range(10):
        if i == 4:
            w.seq += 1  # one packet lost on the way
            continue
        call.dp._on_datagram(call.peer_tx.protect(w.build(i * TICKS, enc.encode_payload(voice))),
                             1)
    # Nine packets decoded and one concealed: ten frames of 24 kHz audio for the model.
    await until(lambda: sum(len(p) for p in call.pcm) >= 9 * 480, 5, "the caller's audio")
    assert call.dp.rx.received == 9 and call.dp.rx.lost == 1
    call.dp._on_datagram(b"\x80\x6f" + bytes(40), 1)  # not from the peer's SRTP keys
    call.dp._on_datagram(b"\x16\xfe\xfd" + bytes(20), 1)  # DTLS: aiortc's, untouched
    assert call.dp.srtp_errors == 1 and call.conn.to_aiortc == [b"\x16\xfe\xfd" + bytes(20)]
    # The peer's receiver report about our stream gives the round trip.
    call.dp.tick()
    call.dp.rtcp()
    sr = parse_rtcp(call.peer_rx.unprotect_rtcp(call.conn.sent[-1]))[0]
    assert isinstance(sr, SenderReport) and sr.ssrc == 0x5EED
    assert sr.blocks[0].ssrc == 0xCA11 and sr.blocks[0].lost == 1
    block = sr.blocks[0]._replace(ssrc=0x5EED, lsr=sr.ntp_mid, dlsr=0)
    call.dp._on_datagram(call.peer_tx.protect_rtcp(build_rr(0xCA11, [block])), 1)
    lost, jitter, rtt = call.dp.quality()
    assert lost == 1 and jitter is not None and rtt is not None and 0 <= rtt < 1


async def test_a_closed_socket_stops_the_sends_without_a_warning_a_packet(
        caplog: pytest.LogCaptureFixture) -> None:
    """A real UDP transport closed under the datapath (the ICE transport went away before the
    call's close reached the datapath): asyncio would log 'socket.send() raised exception.'
    for every packet from the fifth on; the datapath stops at the first."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                       local_addr=("127.0.0.1", 0))
    conn = FakeConnection()
    conn._nominated[1].protocol.transport = transport
    dtls = SimpleNamespace(transport=SimpleNamespace(_connection=conn),
                           _rx_srtp=session(KEY_PEER, False), _tx_srtp=session(KEY_GW, True))
    dp = OwnedDatapath(Playout(120), lambda f, ms: None, VoiceOpusEncoder(),
                       InboundOpus(lambda pcm: None), clock=cast(MediaClock, FakeClock()))
    transceiver = SimpleNamespace(sender=SimpleNamespace(_ssrc=0x5EED, transport=dtls),
                                  receiver=SimpleNamespace(transport=dtls))
    dp.attach(cast(Any, transceiver))
    params = SimpleNamespace(rtcp=SimpleNamespace(cname="gw"), muxId="0",
                             headerExtensions=[], codecs=[SimpleNamespace(payloadType=111)])
    await transceiver.sender.send(params)
    dp.tick()
    assert dp.running and dp.tx is not None and dp.tx.packets == 1
    transport.close()
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        for _ in range(20):
            dp.tick()
    assert not dp.running and dp.send_errors == 1 and dp.tx.packets == 1
    assert not [r for r in caplog.records if "socket.send()" in r.getMessage()]
    await dp.stop()


async def test_stop_says_bye_and_gives_the_socket_back(call: Any) -> None:
    await call.dp.stop()
    assert call.clock.slots == [] and "data_received" not in vars(call.conn)
    bye = call.peer_rx.unprotect_rtcp(call.conn.sent[-1])
    assert bye == bytes.fromhex("81cb0001 00005eed")
    sent = len(call.conn.sent)
    call.dp.tick()  # off the clock and stopped: nothing more is sent
    await call.dp.stop()  # idempotent: no second BYE
    assert len(call.conn.sent) == sent


# -- a real peer through the gateway --------------------------------------------------------


@contextlib.asynccontextmanager
async def real_peer_call(datapath: str) -> AsyncIterator[tuple[Any, ClientPeer, Any]]:
    """A real aiortc peer in a call on ``datapath``, caller audio already upstream:
    (fake upstream, peer, the call); the call's end is awaited on the way out."""
    env = {"GATEWAY_MEDIA_DATAPATH": datapath, "GATEWAY_MEDIA_STATS_INTERVAL_S": "0.5"}
    async with running_fake() as (fake, url), running_gateway(url, env=env) as gw:
        token = await gw.mint({"type": "realtime", "model": "gpt-realtime"})
        peer = ClientPeer(PcmSourceTrack(tone(440.0, -20.0)))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", token)
            (call,) = gw.app[CALLS]._calls.values()
            await until(lambda: len(fake.conn.audio) >= 48 * 1000, 10, "caller audio upstream")
            yield fake, peer, call
        finally:
            await peer.close()
        await until(lambda: not gw.app[CALLS]._calls, 10, "the call ended")


async def test_a_real_peer_on_the_owned_datapath() -> None:
    async with real_peer_call("owned") as (_fake, peer, call):
        dp = cast(Any, call).leg._datapath
        assert dp is not None and dp.running
        assert len(clock_tasks()) == 1
        # aiortc's client reports on our stream about once a second: the RTT appears.
        await until(lambda: dp.tx.rtt_s is not None, 10, "a round trip from the peer's RR")
        await until(lambda: peer.received_audio().size >= 48000, 10, "a second heard")
        # Our sender and receiver reports reach the peer: it has its RTT (from our report
        # block's LSR/DLSR) and our count of its loss.
        async with asyncio.timeout(10):
            while True:
                stats = list((await peer.pc.getStats()).values())
                remote = [s for s in stats if s.type == "remote-inbound-rtp"]
                if remote and remote[0].roundTripTime is not None:
                    break
                await asyncio.sleep(0.1)
        assert remote[0].packetsLost == 0 and 0 <= remote[0].roundTripTime < 1
        inbound = [s for s in stats if s.type == "inbound-rtp"]
        assert inbound and inbound[0].packetsReceived >= 50
        assert inbound[0].packetsLost == 0 and inbound[0].jitter < 48 * 30  # < 30 ms
        assert dp.rx.received >= 50 and dp.rx.lost == 0 and dp.srtp_errors == 0
    assert not clock_tasks()


async def test_a_real_peer_on_the_aiortc_datapath() -> None:
    """The fallback (media.datapath = "aiortc") still carries a call both ways: aiortc's own
    sender and receiver, no media clock, the same quality figures from its stats."""
    async with real_peer_call("aiortc") as (_fake, peer, call):
        assert cast(Any, call).leg._datapath is None
        await until(lambda: peer.received_audio().size >= 48000, 10, "a second heard")
        assert not clock_tasks()
        inbound = [s for s in (await peer.pc.getStats()).values() if s.type == "inbound-rtp"]
        assert inbound and inbound[0].packetsReceived >= 50 and inbound[0].packetsLost == 0


def test_the_datapath_setting_is_checked() -> None:
    from gateway import config

    assert config.load(None, {}).media.datapath == "owned"  # the default since issue 21
    assert config.load(None, {"GATEWAY_MEDIA_DATAPATH": "aiortc"}).media.datapath == "aiortc"
    with pytest.raises(ValueError, match="media.datapath"):
        config.load(None, {"GATEWAY_MEDIA_DATAPATH": "fast"})
