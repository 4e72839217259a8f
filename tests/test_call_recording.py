"""A real call is recorded: both sides time-aligned, transcript, checksums, admin API."""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path

import numpy as np

from tests.fake_upstream import running_fake
from tests.gateway_fixtures import ADMIN, running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, from_pcm
from tests.waiting import until

RATE = 48000


def burst_signal(seconds: float) -> np.ndarray:
    """Chirps (300 Hz to 3 kHz, 100 ms) every 500 ms with varying gaps: easy to find by
    cross-correlation, not periodic, and tonal enough that Opus keeps the waveform."""
    x = np.zeros(int(RATE * seconds), np.int16)
    t = np.arange(4800) / RATE
    chirp = np.sin(2 * np.pi * (300 * t + (2700 / 0.1) * t * t / 2)) * np.hanning(4800)
    for k in range(int(seconds * 2)):
        start = int(k * 0.5 * RATE) + 2400 + 480 * (k % 3)
        x[start:start + 4800] = (chirp * 8000).astype(np.int16)
    return x


def ncc_peak(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Peak normalised cross-correlation of b inside a, and its lag in samples."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    n = len(a) + len(b)
    fa, fb = np.fft.rfft(a, n), np.fft.rfft(b, n)
    corr = np.fft.irfft(fa * np.conj(fb), n)[: len(a) - len(b) + 1]
    cs = np.concatenate([[0.0], np.cumsum(a * a)])
    energy = np.sqrt((cs[len(b):] - cs[: len(a) - len(b) + 1]) * np.dot(b, b)) + 1e-9
    ncc = corr / energy
    k = int(np.argmax(ncc))
    return float(ncc[k]), k


async def test_call_is_recorded_time_aligned_with_transcript() -> None:
    sent = burst_signal(3.0)
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        peer = ClientPeer(PcmSourceTrack(from_pcm(sent)))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            call_id = peer.location.rsplit("/", 1)[1]  # type: ignore[union-attr]
            await asyncio.sleep(3.2)
            await fake.transcribe("hello can you hear me")
            t = np.arange(24000) / 24000
            agent = (7000 * np.sin(2 * np.pi * 600 * t) * (t < 0.8)).astype(np.int16)
            fake.say(agent, "yes I can hear you")
            await peer.next_event("output_audio_buffer.stopped")
            await asyncio.sleep(0.3)
        finally:
            await peer.close()
        await until(lambda: list(gw.recordings.rglob("metadata.json")),
                    10, "the recording's metadata was written")
        meta_path = next(gw.recordings.rglob("metadata.json"))
        d = meta_path.parent
        meta = json.loads(meta_path.read_text())
        assert meta["call_id"] == call_id
        assert meta["transport"] == "webrtc"
        with wave.open(str(d / "audio.wav")) as w:
            assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 24000, 2)
            frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
        left, right = frames[:, 0], frames[:, 1]
        # The WAV covers the call: duration within 40 ms of the metadata's.
        assert abs(len(frames) / 24000 - meta["duration_s"]) < 0.04
        # Left = what the caller sent (resampled to 24 kHz), found whole with a high peak.
        ref = sent[::2][: 24000 * 2]
        peak, lag = ncc_peak(left, ref)
        assert peak >= 0.9, peak
        assert 0 <= lag < 48000  # media starts within 2 s of the call's start (setup)
        # Right = the agent audio the client heard: the 600 Hz tone, after the caller part.
        loud = np.flatnonzero(np.abs(right) > 3000)
        assert len(loud) > 0.5 * 24000  # 0.8 s of tone, |x| > 3000 for 72 % of samples
        assert loud[0] / 24000 > 3.0
        seg = right[loud[0]:loud[0] + 12000]
        spec = np.abs(np.fft.rfft(seg))
        assert abs(np.argmax(spec) * 24000 / len(seg) - 600) < 10
        lines = [json.loads(x) for x in (d / "transcript.jsonl").read_text().splitlines()]
        said = {(x.get("speaker"), x.get("text")) for x in lines if x["kind"] == "utterance"}
        assert ("caller", "hello can you hear me") in said
        assert ("agent", "yes I can hear you") in said
        # The admin API serves it; without the token it does not.
        async with gw.http.get(f"{gw.base}/admin/recordings/{call_id}") as r:
            assert r.status == 401
        auth = {"Authorization": f"Bearer {ADMIN}"}
        async with gw.http.get(f"{gw.base}/admin/recordings", headers=auth) as r:
            listed = await r.json()
            assert [x["call_id"] for x in listed["data"]] == [call_id]
        async with gw.http.get(f"{gw.base}/admin/recordings/{call_id}/audio",
                               headers={**auth, "Range": "bytes=0-43"}) as r:
            assert r.status == 206
            assert (await r.read())[:4] == b"RIFF"
        _ = Path


async def test_barge_in_cuts_the_agent_transcript_to_what_was_heard() -> None:
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        peer = ClientPeer(PcmSourceTrack(from_pcm(burst_signal(1.0))))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            await peer.next_event("session.created")
            t = np.arange(24000 * 4) / 24000
            words = " ".join(f"word{i}" for i in range(40))
            fake.say((6000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16), words, speed=2.0)
            await peer.next_event("output_audio_buffer.started")
            await asyncio.sleep(1.0)
            await fake.speech_started()
            trunc = await peer.next_event("conversation.item.truncated")
        finally:
            await peer.close()
        await until(lambda: list(gw.recordings.rglob("metadata.json")), 10, "metadata")
        d = next(gw.recordings.rglob("metadata.json")).parent
        lines = [json.loads(x) for x in (d / "transcript.jsonl").read_text().splitlines()]
        (agent,) = [x for x in lines if x["kind"] == "utterance" and x["speaker"] == "agent"]
        assert agent["truncated"] is True and agent["heard_ms"] == trunc["audio_end_ms"]
        heard_words = len(agent["text"].split())
        # 40 words over 4 s of audio: about one word per 100 ms heard.
        assert abs(heard_words - trunc["audio_end_ms"] / 100) <= 2
        assert any(x["kind"] == "interruption" for x in lines)
