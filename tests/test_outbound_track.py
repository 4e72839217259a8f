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


def tone_frames(n: int) -> bytes:
    import numpy as np

    t = np.arange(n * FRAME_BYTES // 2) / 24000
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


def test_an_underrun_inside_an_item_is_repaid_from_its_pauses_never_its_speech() -> None:
    p = Playout(max_buffer_s=120)
    p.push(bytes(FRAME_BYTES) * 2, "item_1", "resp_1")
    assert p.pop() is not None and p.pop() is not None
    for _ in range(3):  # the rest of the item is late: three frames of silence were heard
        assert p.pop() is None
    assert p.debt_frames == 3
    # The late audio arrives: speech, a pause of 5 frames, speech.
    p.push(tone_frames(2) + bytes(FRAME_BYTES) * 5 + tone_frames(2), "item_1", "resp_1")
    played = []
    while p.active:
        f = p.pop()
        assert f is not None
        played.append(f)
    assert p.shed_frames == 3 and p.debt_frames == 0
    assert len(played) == 2 + 2 + 2  # the speech, the pause shortened by 3 frames, the speech
    assert sum(1 for f in played if not any(f.pcm)) == 2
    assert p.played_ms["item_1"] == (2 + 2 + 5 + 2) * 20  # the item's position, all of it


def test_silence_after_an_item_ends_or_before_a_new_one_is_no_debt() -> None:
    p = Playout(max_buffer_s=120)
    p.push(bytes(FRAME_BYTES), "item_1", "resp_1")
    p.end_item("item_1")
    p.pop()
    assert p.pop() is None and p.debt_frames == 0  # the item was complete: a real pause
    p.push(bytes(FRAME_BYTES) * 2, "item_2", "resp_2")
    p.pop()
    p.pop()
    p.pop()  # item_2 is unfinished: one frame owed
    assert p.debt_frames == 1
    p.push(bytes(FRAME_BYTES) * 3, "item_3", "resp_3")  # a new item: nothing to catch up
    assert sum(1 for _ in iter(p.pop, None)) == 3 and p.shed_frames == 0
