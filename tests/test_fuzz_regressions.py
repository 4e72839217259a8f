"""Bugs the fuzzers found (tests/fuzz), each kept as a regression test."""

from __future__ import annotations

from tests.gateway_fixtures import API_KEY, running_gateway


def _error(body: dict[str, object]) -> dict[str, object]:
    err = body["error"]
    assert isinstance(err, dict)
    assert set(err) == {"type", "code", "message", "param"}
    return err


async def test_malformed_multipart_part_header_is_400_not_500() -> None:
    # schemathesis: a part header with a control byte made aiohttp's multipart reader raise
    # InvalidHeader inside the handler, answered 500 with a traceback in the log.
    body = (b'--XX\r\nContent-Disposition: form-data; name="\x1b"\r\n\r\nnull\r\n'
            b'--XX\r\nContent-Disposition: form-data; name="sdp"\r\n\r\nv=0\r\n--XX--\r\n')
    async with running_gateway("ws://127.0.0.1:9/v1/realtime") as gw, gw.http.post(
            f"{gw.base}/v1/realtime/calls", data=body,
            headers={"Authorization": f"Bearer {API_KEY}",
                     "Content-Type": "multipart/form-data; boundary=XX"}) as r:
        assert r.status == 400, await r.text()
        assert _error(await r.json())["code"] == "invalid_request_body"


async def test_static_miss_is_an_openai_shaped_404() -> None:
    # schemathesis: GET /static/0 answered an empty application/octet-stream 404.
    async with running_gateway("ws://127.0.0.1:9/v1/realtime") as gw:
        for path in ("/static/0", "/static/..%2fapp.py", "/static/%2e%2e%2f__init__.py"):
            async with gw.http.get(gw.base + path) as r:
                assert r.status == 404, path
                assert r.content_type == "application/json"
                assert _error(await r.json())["code"] == "not_found"
        async with gw.http.get(gw.base + "/static/voice-agent.js") as r:
            assert r.status == 200
            assert "VoiceAgent" in await r.text()


async def test_multipart_without_boundary_is_400_not_500() -> None:
    # schemathesis: 'multipart/form-data' with no boundary raised ValueError in aiohttp's
    # MultipartReader: a 500 with a traceback, on the Twilio webhook and on /calls.
    env = {"TWILIO_AUTH_TOKEN": "tw-test"}
    async with running_gateway("ws://127.0.0.1:9/v1/realtime", env=env) as gw:
        for path, code in (("/twilio/incoming", "invalid_request_body"),
                           ("/v1/realtime/calls", "invalid_multipart")):
            async with gw.http.post(gw.base + path, data=b"x=1", headers={
                    "Authorization": f"Bearer {API_KEY}",
                    "Content-Type": "multipart/form-data"}) as r:
                assert r.status == 400, (path, await r.text())
                assert _error(await r.json())["code"] == code


# -- media parsers (tests/fuzz/harness_media.py) --------------------------------------------

def test_sctp_zero_length_parameter_is_rejected_not_an_endless_loop() -> None:
    # atheris/short fuzz: an INIT chunk whose parameter has length 0 made aiortc's
    # decode_params loop forever appending to a list (22 GB before the OOM killer).
    import struct

    from aiortc import rtcsctptransport as sctp
    from google_crc32c import value as crc32c

    import gateway.legs.webrtc  # noqa: F401  (installs the guards)

    init = struct.pack("!LLHHL", 1, 131072, 1, 1, 42) + struct.pack("!HH", 0xC000, 0)
    chunk = struct.pack("!BBH", 1, 0, 4 + len(init)) + init
    head = struct.pack("!HHL", 5000, 5000, 0)
    body = head + b"\0\0\0\0" + chunk
    packet = head + struct.pack("<L", crc32c(body)) + chunk
    try:
        sctp.parse_packet(packet)
    except ValueError:
        pass
    else:
        raise AssertionError("a zero-length SCTP parameter must be refused")


def test_malformed_stun_and_rtp_raise_value_error() -> None:
    # aioice/aiortc drop a packet on ValueError; these raised struct.error instead (a
    # traceback logged per spoofed datagram; the end of the caller's DTLS transport).
    import struct

    import pytest
    from aioice import stun
    from aiortc.codecs import HEADER_EXTENSIONS
    from aiortc.rtcrtpparameters import RTCRtpParameters
    from aiortc.rtp import HeaderExtensionsMap, RtpPacket

    import gateway.legs.webrtc  # noqa: F401  (installs the guards)

    # Binding request with a 4-byte ICE-CONTROLLING (it is 8 bytes).
    attr = struct.pack("!HH", 0x802A, 4) + b"\0\0\0\1"
    msg = struct.pack("!HHI", 0x0001, len(attr), 0x2112A442) + b"t" * 12 + attr
    with pytest.raises(ValueError):
        stun.parse_message(msg)
    ext = HeaderExtensionsMap()
    ext.configure(RTCRtpParameters(headerExtensions=HEADER_EXTENSIONS["audio"]))
    # One-byte extension id 2 (ssrc-audio-level) carrying 2 bytes (it is 1).
    rtp = (bytes([0x90, 111, 0, 1]) + struct.pack("!II", 0, 1)
           + struct.pack("!HH", 0xBEDE, 1) + bytes([0x21, 0x7F, 0, 0]) + b"\xf8\xff\xfe")
    with pytest.raises(ValueError):
        RtpPacket.parse(rtp, ext)


async def test_offer_without_audio_mid_is_400_and_releases_the_peer() -> None:
    # harness sdp: an audio section without a=mid made aiortc refuse the offer half-applied,
    # and then its pc.close() raised AttributeError: the 400 became a 500 with a traceback
    # and the peer's ICE transport was never stopped.
    import socket

    from aiortc import RTCConfiguration, RTCPeerConnection

    from tests.fake_upstream import running_fake

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("oai-events")
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    offer = str(pc.localDescription.sdp)
    await pc.close()
    audio, app = offer.split("m=application", 1)
    offer = audio.replace("a=mid:0\r\n", "") + "m=application" + app

    def udp_sockets() -> int:
        import os
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                s = socket.socket(fileno=int(fd))
            except OSError:
                continue
            try:
                n += s.type == socket.SOCK_DGRAM
            finally:
                s.detach()
        return n

    async with running_fake() as (_fake, url), running_gateway(url) as gw:
        before = udp_sockets()
        async with gw.http.post(f"{gw.base}/v1/realtime/calls", data=offer, headers={
                "Authorization": f"Bearer {await gw.mint()}",
                "Content-Type": "application/sdp"}) as r:
            assert r.status == 400, await r.text()
            assert _error(await r.json())["code"] == "invalid_sdp"
        assert udp_sockets() <= before
