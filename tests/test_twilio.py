"""Phone calls through Twilio Media Streams, against a protocol-faithful fake Twilio.

Twilio's cloud cannot be reached here, so ``tests/fake_twilio.py`` plays its part from the
documented messages; the upstream is the scripted fake OpenAI of ``tests/fake_upstream.py``.
Signatures are computed with the ``twilio`` package itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import statistics
import wave
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import numpy as np
import pytest

from gateway.api.appkeys import CALLS, FACTORY, METRICS
from gateway.audio.g711 import ulaw_decode, ulaw_encode
from gateway.call.session import CallSession
from gateway.legs.twilio_audio import MarkLedger, MulawPlayout, PcmToMulaw
from gateway.legs.twilio_leg import LEAD_S, TwilioLeg, as_int
from tests.fake_twilio import FakeTwilio, TwilioStream, parse_twiml, sid
from tests.fake_upstream import FakeUpstream, running_fake
from tests.gateway_fixtures import Gateway, running_gateway
from tests.peers import dominant_freq

AUTH_TOKEN = "twilio-test-auth-token-0123456789"
PUBLIC = "https://gw.example.test"
ENV = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "GATEWAY_PUBLIC_URL": PUBLIC,
       # The fake microphone sends silence between utterances; keep the guards out of it.
       "GATEWAY_GUARDS_DEAD_MIC_S": "120", "GATEWAY_GUARDS_IDLE_PROMPT_S": "120",
       "GATEWAY_GUARDS_IDLE_HANGUP_S": "240"}
ALLOWED_TO_TWILIO = {"media", "mark", "clear"}


@contextlib.asynccontextmanager
async def phone_line(env: Mapping[str, str] | None = None
                     ) -> AsyncIterator[tuple[FakeUpstream, Gateway, FakeTwilio]]:
    e = dict(ENV)
    e.update(env or {})
    async with running_fake() as (up, url), running_gateway(url, env=e) as gw:
        twilio = FakeTwilio(gw.http, gw.base, e.get("GATEWAY_PUBLIC_URL", PUBLIC), AUTH_TOKEN)
        try:
            yield up, gw, twilio
        finally:
            await twilio.close()


async def eventually(predicate: Callable[[], bool], within_s: float = 5.0) -> None:
    """Poll state that offers nothing to await (the fake upstream's audio, the call table)."""
    async with asyncio.timeout(within_s):
        for _ in itertools.count():
            if predicate():
                return
            await asyncio.sleep(0.01)


async def the_call(gw: Gateway) -> CallSession:
    await eventually(lambda: len(gw.app[CALLS]) == 1)
    call = next(iter(gw.app[CALLS]))
    assert isinstance(call, CallSession)
    return call


def setup_failures(gw: Gateway, code: str) -> float:
    value = gw.app[METRICS].call_setup_failures.labels("twilio", code)._value.get()
    return float(value)


def speech_mulaw(seconds: float, seed: int = 1) -> bytes:
    """Voice-like µ-law: a 140 Hz buzz with formant-ish harmonics and a little noise."""
    t = np.arange(int(8000 * seconds)) / 8000
    x = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 20))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    x = x + np.random.default_rng(seed).normal(0, 0.05, len(t))
    pcm = (x / np.max(np.abs(x)) * 12000).astype(np.int16)
    return ulaw_encode(pcm)


def tone24(freq: float, seconds: float, amp: float = 8000) -> np.ndarray:
    t = np.arange(int(24000 * seconds)) / 24000
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def upstream_events(up: FakeUpstream, etype: str) -> list[dict[str, Any]]:
    return [e for e in up.conn.received if e["type"] == etype]


# -- pure bookkeeping ----------------------------------------------------------------------


def test_mulaw_frames_marks_and_transcoding() -> None:
    p = MulawPlayout(max_buffer_s=1.0)
    p.push(b"\x01" * 250, "item_a", "resp_1")
    p.end_item("item_a")
    first, last = p.pop(), p.pop()
    assert first is not None and last is not None and p.pop() is None
    assert first.pcm == b"\x01" * 160 and first.audio_ms == 20
    assert last.pcm == b"\x01" * 90 + b"\xff" * 70  # padded with µ-law silence, not 0x00
    assert last.audio_ms == pytest.approx(90 / 8)

    ledger = MarkLedger()
    names = [ledger.sent("a", 20, 0.0) for _ in range(3)] + [ledger.sent("b", 20, 0.0)]
    ledger.ack(int(names[1]))  # one echo acknowledges everything before it
    assert ledger.played_ms("a") == 40 and ledger.head_item == "a" and len(ledger) == 2
    ledger.forget_pending()  # a clear: the echoes still to come are for dropped audio
    ledger.ack(int(names[3]))
    assert ledger.played_ms("a") == 40 and ledger.played_ms("b") == 0 and not ledger

    pcm = tone24(600, 0.5)
    whole = PcmToMulaw().push(pcm.tobytes())
    tc = PcmToMulaw()
    data, out = pcm.tobytes(), b""
    for i in range(0, len(data), 1001):  # odd sizes: samples split across deltas
        out += tc.push(data[i:i + 1001])
    out += tc.flush()
    assert out == whole and len(out) == 4000
    assert [as_int(v) for v in ("12", 12, "x", True, None, "-1")] == [12, 12, None, None,
                                                                      None, None]


# -- the webhook -------------------------------------------------------------------------


async def test_unsigned_or_wrongly_signed_webhook_is_refused_and_starts_nothing() -> None:
    async with phone_line() as (up, gw, twilio):
        other = FakeTwilio(gw.http, gw.base, PUBLIC, "some-other-account-token")
        attempts = [
            twilio.incoming(signature=None),
            twilio.incoming(signature="bm90IGEgc2lnbmF0dXJl"),
            twilio.incoming(signed_url="https://evil.example/twilio/incoming"),
            other.incoming(),
        ]
        for attempt in attempts:
            status, text = await attempt
            assert status == 403, text
            err = json.loads(text)["error"]
            assert err["code"] == "invalid_signature" and err["type"] == "invalid_request_error"
            assert AUTH_TOKEN not in text
        assert setup_failures(gw, "invalid_signature") == 4
        assert len(gw.app[CALLS]) == 0 and not up.conns
        # The same request, correctly signed, is answered.
        status, text = await twilio.incoming()
        assert status == 200 and "<Stream" in text


async def test_twiml_connects_a_stream_without_query_string() -> None:
    async with phone_line() as (up, gw, twilio):
        status, text = await twilio.incoming(query="profile=default")
        assert status == 200
        twiml = parse_twiml(text)
        assert twiml.stream_url == "wss://gw.example.test/twilio/media-stream"
        assert "?" not in twiml.stream_url  # Twilio error 31920
        assert twiml.parameters["profile"] == "default"
        assert twiml.parameters["token"].startswith("ek_")
        assert AUTH_TOKEN not in text
        status, text = await twilio.incoming(query="profile=nope")
        assert status == 404 and json.loads(text)["error"]["code"] == "unknown_profile"
        assert not up.conns  # answering the webhook does not touch the upstream


async def test_signature_checked_against_the_forwarded_public_url() -> None:
    """No GATEWAY_PUBLIC_URL: behind a TLS-terminating proxy the URL Twilio signed is
    rebuilt from X-Forwarded-Proto/Host, and the stream URL uses the same host."""
    env = {"GATEWAY_PUBLIC_URL": ""}
    async with phone_line(env) as (_up, gw, twilio):
        public = "https://voice.example.org"
        fwd = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "voice.example.org"}
        status, text = await twilio.incoming(
            headers=fwd, signed_url=f"{public}/twilio/incoming?profile=default",
            query="profile=default")
        assert status == 200, text
        assert parse_twiml(text).stream_url == "wss://voice.example.org/twilio/media-stream"
        # Without the proxy's headers the gateway sees another URL: the signature fails.
        status, _ = await twilio.incoming(signed_url=f"{public}/twilio/incoming")
        assert status == 403


async def test_twilio_not_configured_is_503() -> None:
    async with phone_line({"TWILIO_AUTH_TOKEN": ""}) as (up, gw, twilio):
        status, text = await twilio.incoming()
        assert status == 503
        assert json.loads(text)["error"]["message"] == "twilio not configured"
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await gw.http.ws_connect(gw.base.replace("http", "ws") + "/twilio/media-stream")
        assert e.value.status == 503


# -- stream setup --------------------------------------------------------------------------


async def refused(stream: TwilioStream) -> None:
    """The gateway closes the socket; nothing reached the upstream."""
    await asyncio.wait_for(stream.closed.wait(), 5)


async def test_bad_or_missing_token_closes_the_socket_before_any_audio() -> None:
    async with phone_line() as (up, gw, twilio):
        status, text = await twilio.incoming()
        twiml = parse_twiml(text)
        cases: list[tuple[dict[str, str], str]] = [
            ({"token": "ek_forged.token", "profile": "default"}, "invalid_token"),
            ({"profile": "default"}, "missing_token"),
            # A real token, but Twilio's start names another call than the one it was minted for.
            (twiml.parameters, "call_sid_mismatch"),
        ]
        for params, code in cases:
            stream = await twilio.connect(twiml)
            await stream.begin(params)
            await refused(stream)
            assert setup_failures(gw, code) == 1, code
        # A token is single use: replaying the TwiML's token once it was spent is refused.
        call_sid = sid("CA")
        status, text = await twilio.incoming(call_sid=call_sid)
        twiml = parse_twiml(text)
        first = await twilio.connect(twiml)
        first.call_sid = call_sid
        await first.begin(twiml.parameters)
        await the_call(gw)
        replay = await twilio.connect(twiml)
        replay.call_sid = call_sid
        await replay.begin(twiml.parameters)
        await refused(replay)
        assert setup_failures(gw, "token_already_used") == 1
        assert len(up.conns) == 1  # only the legitimate call reached the upstream
        await first.stop()
        await eventually(lambda: len(gw.app[CALLS]) == 0)


async def test_handshake_signature_when_present_must_match() -> None:
    async with phone_line() as (_up, gw, twilio):
        _, text = await twilio.incoming()
        twiml = parse_twiml(text)
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await twilio.connect(twiml, signature="d3Jvbmc=")
        assert e.value.status == 403
        # Signed over the https:// form of the URL, or not signed at all: accepted.
        https_form = twiml.stream_url.replace("wss://", "https://")
        ok = await twilio.connect(twiml, signature=twilio.validator.compute_signature(
            https_form, {}))
        unsigned = await twilio.connect(twiml, sign=False)
        for s in (ok, unsigned):
            assert not s.ws.closed
            await s.close()


async def test_unsupported_media_format_is_refused() -> None:
    async with phone_line() as (up, gw, twilio):
        _, text = await twilio.incoming()
        twiml = parse_twiml(text)
        stream = await twilio.connect(twiml)
        await stream.begin(twiml.parameters, media_format={
            "encoding": "audio/x-alaw", "sampleRate": 8000, "channels": 1})
        await refused(stream)
        assert setup_failures(gw, "unsupported_media_format") == 1 and not up.conns


# -- a call --------------------------------------------------------------------------------


async def test_phone_call_audio_pacing_marks_and_barge_in() -> None:
    async with phone_line() as (up, gw, twilio):
        extras: list[dict[str, Any]] = []
        gw.app[FACTORY].setup_hooks.append(lambda call, extra: extras.append(dict(extra)))
        stream = await twilio.call(caller="+15551234567")
        call = await the_call(gw)
        assert call.transport == "twilio"
        # The caller's number goes where the recorder reads call metadata, and on the leg.
        assert extras == [{"caller": "+15551234567", "call_sid": stream.call_sid,
                           "stream_sid": stream.stream_sid}]
        assert isinstance(call.leg, TwilioLeg) and call.leg.caller == "+15551234567"
        playouts: list[tuple[bool, int]] = []
        call.hooks.playout.append(lambda started: playouts.append((started, len(stream.played))))
        fmt = upstream_events(up, "session.update")[0]["session"]["audio"]
        assert fmt["input"]["format"] == {"type": "audio/pcmu"}
        assert fmt["output"]["format"] == {"type": "audio/pcmu"}

        # Inbound: µ-law reaches the upstream byte for byte (no transcoding on the way).
        speech = speech_mulaw(0.6)
        stream.speak(speech)
        await eventually(lambda: speech in bytes(up.conn.audio))
        got = bytes(up.conn.audio)
        assert got == bytes(stream.mic_sent[:len(got)])
        assert len(got) % 320 == 0  # 40 ms appends

        # Outbound: 1 s of agent µ-law, delivered at once by the upstream, reaches Twilio as
        # 160-byte frames paced to real time.
        agent = tone24(500, 1.0)
        expected = FakeUpstream.encode(agent, "pcmu")
        assert len(expected) == 8000
        up.say(agent, "one second of speech", encoding="pcmu")
        await stream.until(lambda: len(stream.played) >= len(expected))
        media = [m for m in stream.received if m["event"] == "media"]
        assert len(media) == 50
        assert bytes(stream.media_in) == expected  # pass-through both ways
        arrivals = stream.media_arrivals
        span = arrivals[-1] - arrivals[0]
        assert 0.85 <= span <= 1.25, span
        # Never ahead of real time by more than the lead Twilio is given to absorb jitter.
        ahead = max(i * 0.020 - (t - arrivals[0]) for i, t in enumerate(arrivals))
        assert ahead <= LEAD_S + 0.030, ahead
        assert 0.018 <= statistics.mean(np.diff(arrivals[10:])) <= 0.022
        # A mark follows every frame; all come back once played, and then nothing is playing.
        marks = [m["mark"]["name"] for m in stream.received if m["event"] == "mark"]
        assert len(marks) == 50
        await eventually(lambda: not call.leg.audio_active)  # type: ignore[union-attr]
        assert call.stats.agent_audio_ms == pytest.approx(1000)
        # Playback "stopped" (what idle timers count from) once Twilio played it all, not when
        # the last frame was sent.
        assert playouts == [(True, 0), (False, len(expected))]

        # Barge-in while a long answer plays: clear, and truncate at what was played.
        n0, played0 = len(stream.media_in), len(stream.played)
        # Generated at twice real time: still in progress when the caller cuts in.
        up.say(tone24(700, 3.0), "a long answer", encoding="pcmu", speed=2.0)
        await stream.until(lambda: len(stream.played) >= played0 + 8 * 600)
        await up.speech_started()
        await stream.until(lambda: bool(stream.clears))
        await eventually(lambda: bool(upstream_events(up, "conversation.item.truncate")))
        trunc = upstream_events(up, "conversation.item.truncate")[0]
        heard_ms = (stream.clears[0].played_bytes - played0) / 8
        assert abs(trunc["audio_end_ms"] - heard_ms) <= 40, (trunc, heard_ms)
        assert 560 <= heard_ms <= 800
        assert stream.clears[0].dropped_bytes > 0  # Twilio held some audio ahead: it is gone
        sent_for_item = (len(stream.media_in) - n0) / 8
        assert sent_for_item < 1000  # paced: not the whole 3 s dumped on Twilio
        arrived = len(stream.media_arrivals)
        await asyncio.sleep(0.2)  # nothing more of the cut answer may follow the clear
        assert len(stream.media_arrivals) <= arrived + 1
        assert upstream_events(up, "response.cancel")  # the answer was still being generated

        assert not stream.violations
        assert {m["event"] for m in stream.received} <= ALLOWED_TO_TWILIO

        # The caller hangs up.
        await stream.stop()
        await eventually(lambda: len(gw.app[CALLS]) == 0)
        assert call.end_reason == "client_closed"


async def test_dtmf_becomes_a_note_or_model_input(monkeypatch: pytest.MonkeyPatch) -> None:
    async with phone_line() as (up, gw, twilio):
        stream = await twilio.call()
        call = await the_call(gw)
        notes: list[tuple[str, dict[str, Any]]] = []
        call.hooks.notes.append(lambda kind, _ms, fields: notes.append((kind, fields)))
        await stream.dtmf("5")
        await stream.dtmf("#")
        await eventually(lambda: len(notes) == 2)
        assert notes == [("dtmf", {"digit": "5"}), ("dtmf", {"digit": "#"})]
        assert not upstream_events(up, "conversation.item.create")
        await stream.stop()
        await eventually(lambda: len(gw.app[CALLS]) == 0)

        monkeypatch.setenv("GATEWAY_TWILIO_DTMF", "input")
        stream = await twilio.call()
        await the_call(gw)
        await stream.dtmf("7")
        await eventually(lambda: bool(upstream_events(up, "conversation.item.create")))
        item = upstream_events(up, "conversation.item.create")[0]["item"]
        assert item["content"][0]["text"] == "The caller pressed 7 on the keypad."
        await eventually(lambda: bool(upstream_events(up, "response.create")))
        await stream.stop()
        await eventually(lambda: len(gw.app[CALLS]) == 0)


async def test_bad_input_is_ignored_and_touches_no_other_call() -> None:
    async with phone_line() as (up, gw, twilio):
        # Call A: media before start is dropped, then a normal start.
        call_sid = sid("CA")
        _, text = await twilio.incoming(call_sid=call_sid)
        twiml = parse_twiml(text)
        a = await twilio.connect(twiml)
        a.call_sid = call_sid
        early = b"\x10" * 160
        await a.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await a.send(a.media_message(early))
        await a.begin(twiml.parameters)
        call_a = await the_call(gw)
        up_a = up.conn
        b = await twilio.call(caller="+15557654321")
        await eventually(lambda: len(gw.app[CALLS]) == 2)
        up_b = up.conn
        assert up_b is not up_a

        bad: list[dict[str, Any] | str] = [
            "this is not json",
            {"no": "event"},
            {"event": "bogus", "streamSid": a.stream_sid},
            {"event": "media", "streamSid": a.stream_sid, "media": {"payload": "!!not base64"}},
            {"event": "media", "streamSid": "MZwrong", "media": {"payload": "AAAA"}},
            {"event": "media", "streamSid": a.stream_sid,
             "media": {"payload": "A" * 40_000}},  # oversized frame
            {"event": "media", "streamSid": a.stream_sid},
            {"event": "mark", "streamSid": a.stream_sid, "mark": {"name": "not-ours"}},
            {"event": "dtmf", "streamSid": a.stream_sid, "dtmf": {"digit": "x"}},
            {"event": "start", "streamSid": a.stream_sid, "start": {}},
        ]
        for msg in bad:
            await a.send(msg)
        await a.ws.send_bytes(b"\x00\x01")
        # Call A goes on: its audio still passes through, byte for byte.
        speech = speech_mulaw(0.3, seed=2)
        a.speak(speech)
        await eventually(lambda: speech in bytes(up_a.audio))
        assert early not in bytes(up_a.audio)
        assert isinstance(call_a.leg, TwilioLeg)
        ignored = call_a.leg.ignored
        for kind in ("invalid_json", "invalid_message", "unknown_event:bogus", "bad_base64",
                     "wrong_stream_sid", "oversized_media", "media_without_body",
                     "unknown_mark", "bad_dtmf",
                     "repeated_start", "binary_message"):
            assert ignored[kind] >= 1, (kind, ignored)
        # Call B never noticed.
        speech_b = speech_mulaw(0.3, seed=3)
        b.speak(speech_b)
        await eventually(lambda: speech_b in bytes(up_b.audio))
        assert len(gw.app[CALLS]) == 2
        assert not a.violations and not b.violations
        await a.stop()
        await b.stop()
        await eventually(lambda: len(gw.app[CALLS]) == 0)


async def test_transcode_mode_sends_pcm_upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TWILIO_TRANSCODE", "1")
    async with phone_line() as (up, gw, twilio):
        stream = await twilio.call()
        await the_call(gw)
        fmt = upstream_events(up, "session.update")[0]["session"]["audio"]["input"]["format"]
        assert fmt["type"] == "audio/pcm"
        stream.speak(ulaw_encode((6000 * np.sin(2 * np.pi * 440 * np.arange(4000) / 8000))
                                 .astype(np.int16)))
        # PCM16 24 kHz: 6 bytes upstream for every µ-law byte.
        await eventually(lambda: len(up.conn.audio) >= 6 * 4000 + 6 * 1600)
        pcm = np.frombuffer(bytes(up.conn.audio), dtype="<i2")
        loud = pcm[np.abs(pcm) > 0]
        assert abs(dominant_freq(loud[:12000], 24000) - 440) < 10
        up.say(tone24(600, 0.5), "half a second")  # PCM from the upstream
        await stream.until(lambda: len(stream.played) >= 4000)
        media = [m for m in stream.received if m["event"] == "media"]
        assert len(media) == 25
        assert abs(dominant_freq(ulaw_decode(bytes(stream.media_in)), 8000) - 600) < 10
        assert not stream.violations
        await stream.stop()
        await eventually(lambda: len(gw.app[CALLS]) == 0)


async def test_phone_call_is_recorded_with_the_callers_number_and_both_sides() -> None:
    async with phone_line() as (up, gw, twilio):
        stream = await twilio.call(caller="+15551230000")
        call = await the_call(gw)
        assert call.caller == "+15551230000"
        speech = speech_mulaw(1.0)
        stream.speak(speech)
        await eventually(lambda: speech in bytes(up.conn.audio))
        await up.transcribe("hello from the phone")
        up.say(tone24(600, 0.8), "hello caller", encoding="pcmu")
        await stream.until(lambda: len(stream.played) >= 6400)
        await stream.dtmf("3")
        await eventually(lambda: not call.leg.audio_active)  # type: ignore[union-attr]
        await stream.stop()
        await asyncio.wait_for(call.closed.wait(), 5)
        await eventually(lambda: bool(list(gw.recordings.rglob("metadata.json"))))
        meta_path = next(gw.recordings.rglob("metadata.json"))
        meta = json.loads(meta_path.read_text())
        assert meta["transport"] == "twilio" and meta["caller"] == "+15551230000"
        with wave.open(str(meta_path.parent / "audio.wav")) as w:
            assert (w.getnchannels(), w.getframerate()) == (2, 24000)
            frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
        left, right = frames[:, 0], frames[:, 1]
        # Left: the caller's speech, decoded from µ-law (140 Hz buzz, ~1 s loud).
        loud_left = np.flatnonzero(np.abs(left) > 2000)
        assert len(loud_left) > 0.4 * 24000
        # Right: the agent's 600 Hz tone as played to the phone, after the caller spoke.
        loud_right = np.flatnonzero(np.abs(right) > 2000)
        assert 0.4 * 24000 < len(loud_right) < 0.85 * 24000
        assert loud_right[0] > loud_left[0]
        seg = right[loud_right[0]:loud_right[0] + 12000]
        assert abs(dominant_freq(seg, 24000) - 600) < 10
        lines = [json.loads(x) for x in
                 (meta_path.parent / "transcript.jsonl").read_text().splitlines()]
        said = {(x.get("speaker"), x.get("text")) for x in lines if x["kind"] == "utterance"}
        assert ("caller", "hello from the phone") in said
        assert ("agent", "hello caller") in said
        assert any(x.get("event") == "dtmf" and x.get("digit") == "3" for x in lines), lines
