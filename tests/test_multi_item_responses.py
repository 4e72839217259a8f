"""Responses with several output items (a preamble, then the answer) through the gateway.

A scripted, GA-validated upstream (tests/fake_upstream.py) sends ONE response with two audio
items, or an audio item then a function call; a real aiortc peer is the caller. Every event
the peer receives validates against the GA types. A barge-in during the second item must
truncate the second item with the ms heard of it (not the first, not the sum), drop what
still arrives of the cut response, and the recording must hold each item where it was heard.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import wave
from typing import Any

import numpy as np
import numpy.typing as npt

from tests.fake_upstream import Conn, running_fake
from tests.gateway_fixtures import running_gateway
from tests.oracle import validate_server_event
from tests.peers import ClientPeer, PcmSourceTrack, silence
from tests.waiting import until

FIRST_HZ, SECOND_HZ = 700.0, 1300.0


def tone24(freq: float, seconds: float, amp: float = 7000) -> npt.NDArray[np.int16]:
    t = np.arange(int(24000 * seconds)) / 24000
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def ms_of(audio: npt.NDArray[np.int16], freq: float, rate: int = 48000) -> float:
    """Milliseconds of 20 ms blocks whose dominant frequency is ``freq`` and that are loud."""
    n = rate // 50
    x = audio[: len(audio) // n * n].astype(np.float64).reshape(-1, n)
    if not len(x):
        return 0.0
    loud = np.sqrt((x ** 2).mean(axis=1)) > 1500
    peak = np.argmax(np.abs(np.fft.rfft(x * np.hanning(n), axis=1)), axis=1) * rate / n
    return float(np.count_nonzero(loud & (np.abs(peak - freq) < 60))) * 20


def first_at(audio: npt.NDArray[np.int16], freq: float, rate: int) -> float:
    """Seconds into ``audio`` of the first loud 20 ms block at ``freq``."""
    n = rate // 50
    x = audio[: len(audio) // n * n].astype(np.float64).reshape(-1, n)
    loud = np.sqrt((x ** 2).mean(axis=1)) > 1500
    peak = np.argmax(np.abs(np.fft.rfft(x * np.hanning(n), axis=1)), axis=1) * rate / n
    hits = np.flatnonzero(loud & (np.abs(peak - freq) < 60))
    assert len(hits), f"no {freq} Hz in the audio"
    return float(hits[0]) * n / rate


class Scripted:
    """One upstream response with several output items, sent the way OpenAI orders them."""

    def __init__(self, conn: Conn) -> None:
        self.c = conn
        self.rid = f"resp_{secrets.token_hex(8)}"
        self.output: list[dict[str, Any]] = []
        self.cancelled = False

    async def begin(self) -> None:
        self.c.active = self.rid
        self.c.cancelled.clear()
        await self.c.send({"type": "response.created", "response": {
            "id": self.rid, "object": "realtime.response", "output": [],
            "status": "in_progress"}})

    async def audio_item(self, iid: str, pcm: npt.NDArray[np.int16], transcript: str,
                         speed: float) -> None:
        c, index = self.c, len(self.output)
        item = {"id": iid, "type": "message", "role": "assistant", "status": "in_progress",
                "object": "realtime.item", "content": []}
        await c.send({"type": "response.output_item.added", "response_id": self.rid,
                      "output_index": index, "item": item})
        await c.send({"type": "conversation.item.added", "item": item})
        ids = {"response_id": self.rid, "item_id": iid, "output_index": index,
               "content_index": 0}
        await c.send({"type": "response.content_part.added", **ids,
                      "part": {"type": "audio", "transcript": ""}})
        data, step = pcm.tobytes(), 4800  # 100 ms deltas
        words = transcript.split()
        for k, i in enumerate(range(0, len(data), step)):
            if c.cancelled.is_set():
                self.cancelled = True
                break
            if k < len(words):
                await c.send({"type": "response.output_audio_transcript.delta", **ids,
                              "delta": (" " if k else "") + words[k]})
            await c.send({"type": "response.output_audio.delta", **ids,
                          "delta": base64.b64encode(data[i:i + step]).decode()})
            await asyncio.sleep(0.1 / speed if speed else 0)
        status = "incomplete" if self.cancelled else "completed"
        await c.send({"type": "response.output_audio.done", **ids})
        await c.send({"type": "response.output_audio_transcript.done", **ids,
                      "transcript": transcript})
        await c.send({"type": "response.content_part.done", **ids,
                      "part": {"type": "audio", "transcript": transcript}})
        done = dict(item, status=status, content=[{"type": "output_audio",
                                                   "transcript": transcript}])
        await c.send({"type": "response.output_item.done", "response_id": self.rid,
                      "output_index": index, "item": done})
        self.output.append(done)

    async def function_call(self, name: str, arguments: str) -> None:
        c, index = self.c, len(self.output)
        iid, call_id = f"item_fc{index}", f"call_{index}x"
        item = {"id": iid, "type": "function_call", "status": "in_progress",
                "object": "realtime.item", "name": name, "call_id": call_id, "arguments": ""}
        await c.send({"type": "response.output_item.added", "response_id": self.rid,
                      "output_index": index, "item": item})
        await c.send({"type": "response.function_call_arguments.done", "response_id": self.rid,
                      "item_id": iid, "output_index": index, "call_id": call_id,
                      "name": name, "arguments": arguments})
        done = dict(item, status="completed", arguments=arguments)
        await c.send({"type": "response.output_item.done", "response_id": self.rid,
                      "output_index": index, "item": done})
        self.output.append(done)

    async def end(self) -> None:
        status = "cancelled" if self.cancelled else "completed"
        resp: dict[str, Any] = {"id": self.rid, "object": "realtime.response",
                                "output": self.output, "status": status}
        if self.cancelled:
            resp["status_details"] = {"type": "cancelled", "reason": "turn_detected"}
        self.c.active = None
        await self.c.send({"type": "response.done", "response": resp})


async def test_barge_in_during_the_second_audio_item_truncates_that_item() -> None:
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        peer = ClientPeer(PcmSourceTrack(silence()))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            call_id = peer.location.rsplit("/", 1)[1]  # type: ignore[union-attr]
            await peer.next_event("session.created")
            s = Scripted(fake.conn)

            async def respond() -> None:
                await s.begin()
                # The preamble arrives whole and fast; the answer streams at 2x real time.
                await s.audio_item("item_preamble", tone24(FIRST_HZ, 1.0), "One moment.", 0)
                await s.audio_item("item_answer", tone24(SECOND_HZ, 6.0),
                                   " ".join(f"w{i}" for i in range(60)), 2.0)
                await s.end()

            task = asyncio.ensure_future(respond())
            try:
                # Barge in once the caller has heard 600 ms of the second item.
                await until(lambda: ms_of(peer.received_audio(), SECOND_HZ) >= 600, 15,
                            "the peer hears the second item")
                await fake.speech_started()
                trunc = await peer.next_event("conversation.item.truncated")
                await peer.next_event("response.done")
                await asyncio.wait_for(task, 10)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(0.5)  # packets in flight arrive
            heard_first = ms_of(peer.received_audio(), FIRST_HZ)
            heard_second = ms_of(peer.received_audio(), SECOND_HZ)
            sent = [e for e in fake.conn.received if e["type"] == "conversation.item.truncate"]
            # One truncate, of the item that was playing, with what was heard of it alone.
            assert [e["item_id"] for e in sent] == ["item_answer"], sent
            assert trunc["item_id"] == "item_answer"
            assert 600 <= trunc["audio_end_ms"] < 6000
            assert abs(trunc["audio_end_ms"] - heard_second) <= 80, (trunc, heard_second)
            assert heard_first >= 900  # the preamble was heard whole
            assert any(e["type"] == "response.cancel" for e in fake.conn.received)
            for ev in peer.all_events:
                validate_server_event(ev)
        finally:
            await peer.close()
        await until(lambda: list(gw.recordings.rglob("metadata.json")), 10, "metadata")
        d = next(gw.recordings.rglob("metadata.json")).parent
        lines = [json.loads(x) for x in (d / "transcript.jsonl").read_text().splitlines()]
        agent = {x["item_id"]: x for x in lines
                 if x["kind"] == "utterance" and x["speaker"] == "agent"}
        assert set(agent) == {"item_preamble", "item_answer"}
        assert agent["item_preamble"]["text"] == "One moment."
        assert "truncated" not in agent["item_preamble"]
        assert agent["item_answer"]["truncated"] is True
        assert agent["item_answer"]["heard_ms"] == trunc["audio_end_ms"]
        with wave.open(str(d / "audio.wav")) as w:
            frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
        right = frames[:, 1].copy()
        # Each item sits in the agent channel where its transcript line says it was heard,
        # the answer right after the preamble, and only as much of it as was heard.
        at_first, at_second = first_at(right, FIRST_HZ, 24000), first_at(right, SECOND_HZ, 24000)
        assert abs(at_first - agent["item_preamble"]["offset_ms"] / 1000) <= 0.06
        assert abs(at_second - agent["item_answer"]["offset_ms"] / 1000) <= 0.06
        assert abs((at_second - at_first) - 1.0) <= 0.06
        assert abs(ms_of(right, SECOND_HZ, 24000) - trunc["audio_end_ms"]) <= 80
        assert call_id in str(d)


async def test_audio_still_arriving_for_a_cut_response_is_not_played() -> None:
    """Barge-in during the preamble: the answer item that arrives after it is unheard, so
    it is truncated at 0 and none of it reaches the caller."""
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        peer = ClientPeer(PcmSourceTrack(silence()))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            await peer.next_event("session.created")
            s = Scripted(fake.conn)
            go_on = asyncio.Event()

            async def respond() -> None:
                await s.begin()
                await s.audio_item("item_preamble", tone24(FIRST_HZ, 3.0), "Let me see.", 2.0)
                await go_on.wait()
                fake.conn.cancelled.clear()  # a late upstream: the answer was on its way
                await s.audio_item("item_answer", tone24(SECOND_HZ, 1.0), "Found it.", 0)
                await s.end()

            task = asyncio.ensure_future(respond())
            try:
                await until(lambda: ms_of(peer.received_audio(), FIRST_HZ) >= 400, 15,
                            "the peer hears the preamble")
                await fake.speech_started()
                await peer.next_event("output_audio_buffer.cleared")
                go_on.set()
                await peer.next_event("response.done")
                await asyncio.wait_for(task, 10)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(0.5)
            sent = {e["item_id"]: e["audio_end_ms"] for e in fake.conn.received
                    if e["type"] == "conversation.item.truncate"}
            assert sent["item_answer"] == 0
            assert 400 <= sent["item_preamble"] < 3000
            assert ms_of(peer.received_audio(), SECOND_HZ) == 0
            for ev in peer.all_events:
                validate_server_event(ev)
        finally:
            await peer.close()


async def test_a_preamble_then_a_function_call_in_one_response_reach_the_client() -> None:
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        peer = ClientPeer(PcmSourceTrack(silence()))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint(
                {"type": "realtime", "tools": [{
                    "type": "function", "name": "get_weather", "description": "Weather.",
                    "parameters": {"type": "object", "properties": {}}}]}))
            await peer.next_event("session.created")
            s = Scripted(fake.conn)
            await s.begin()
            await s.audio_item("item_preamble", tone24(FIRST_HZ, 0.6), "Checking.", 0)
            await s.function_call("get_weather", '{"city":"Paris"}')
            await s.end()
            done = await peer.next_event("response.done")
            await peer.next_event("output_audio_buffer.stopped")
            assert [o["type"] for o in done["response"]["output"]] == ["message",
                                                                       "function_call"]
            args = await peer.next_event("response.function_call_arguments.done")
            assert args["name"] == "get_weather" and args["output_index"] == 1
            assert ms_of(peer.received_audio(), FIRST_HZ) >= 500
            # The client's own tool: the gateway runs nothing and sends nothing for it.
            assert not [e for e in fake.conn.received if e["type"] in (
                "conversation.item.create", "response.create")]
            for ev in peer.all_events:
                validate_server_event(ev)
        finally:
            await peer.close()
