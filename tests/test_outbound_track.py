"""The paced outbound track: real-time pacing, and what happens when the loop stalls."""

from __future__ import annotations

import time

from gateway.audio.formats import FRAME_BYTES
from gateway.legs.playout import Playout
from gateway.legs.tracks import OutboundAudioTrack


def queued(n: int) -> Playout:
    p = Playout(max_buffer_s=120)
    p.push(bytes(FRAME_BYTES) * n, "item_1", "resp_1")
    return p


async def test_a_stall_drops_the_audio_of_the_skipped_slots_instead_of_queueing_it() -> None:
    playout = queued(100)
    sent: list[float] = []
    track = OutboundAudioTrack(playout, lambda f, ms: sent.append(ms))
    await track.recv()
    await track.recv()
    assert len(playout._frames) == 98
    time.sleep(0.5)  # noqa: ASYNC251  # a stalled loop on purpose: ~25 frame slots go by
    await track.recv()
    skipped = sent[-1] / 20 - 2  # slots jumped over by the RTP clock
    assert skipped >= 20
    # The queue lost the skipped slots' frames too: the caller stays in real time.
    assert len(playout._frames) == 97 - skipped
    assert playout.dropped_frames == skipped
    assert playout.played_ms["item_1"] == 3 * 20  # dropped audio was not heard
    track.stop()


async def test_no_stall_no_drop() -> None:
    playout = queued(10)
    track = OutboundAudioTrack(playout, lambda f, ms: None)
    t0 = time.monotonic()
    for _ in range(5):
        await track.recv()
    assert 0.07 <= time.monotonic() - t0 < 0.2  # paced: 4 intervals of 20 ms
    assert playout.dropped_frames == 0 and len(playout._frames) == 5
    track.stop()
