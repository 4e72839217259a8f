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
