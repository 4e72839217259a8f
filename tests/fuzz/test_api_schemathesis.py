"""Schemathesis drives every operation of ``GET /openapi.json`` against a real gateway process.

Checks on every response: no 5xx, a status the document declares, the declared content type,
a body valid against the declared schema (errors: ``{"error": {type, code, message, param}}``)
and headers, and no secret anywhere in it. Credentials follow each operation's security
(API key, admin token, a valid Twilio signature); schemathesis also sends cases without them.

``FUZZ_API_EXAMPLES`` (default 12 per operation and mode, about 25 s here) is raised by
``make fuzz``. The seed is fixed (``derandomize``): a failure replays.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks as st_checks
from schemathesis.specs.openapi import checks as oa_checks
from twilio.request_validator import RequestValidator

from gateway.api.openapi import document
from tests.fuzz.servers import ADMIN, API_KEY, SECRETS, TWILIO, GatewayProc, gateway_process

EXAMPLES = int(os.environ.get("FUZZ_API_EXAMPLES", "12"))
schema = schemathesis.openapi.from_dict(document())


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProc]:
    with gateway_process() as gw:
        yield gw
        text = gw.log.read_text(errors="replace")
    for s in SECRETS:
        assert s not in text, "a secret reached the gateway's log"
    assert "Traceback" not in text, text[-4000:]


@schemathesis.serializer("application/sdp")
def sdp_serializer(ctx: Any, value: Any) -> bytes:
    """SDP is text; a generated non-string goes as its JSON text (still not an offer)."""
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else json.dumps(value)).encode("utf-8", "replace")


@schemathesis.check
def no_secret_in_response(ctx: Any, response: Any, case: Any) -> bool | None:
    blob = response.content + str(dict(response.headers)).encode()
    leaked = [s for s in SECRETS if s.encode() in blob]
    if leaked:
        raise AssertionError(f"{len(leaked)} secret(s) in the response")
    return None


def credentials(case: Any, base: str) -> dict[str, str]:
    path = case.operation.path
    if path.startswith("/admin/"):
        return {"Authorization": f"Bearer {ADMIN}"}
    if path == "/twilio/incoming" and isinstance(case.body, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in case.body.items()):
        url = base + case.formatted_path
        if case.query:
            url += "?" + urlencode(case.query, doseq=True)
        sig = RequestValidator(TWILIO).compute_signature(url, case.body)
        return {"X-Twilio-Signature": sig}
    if path.startswith("/v1/"):
        return {"Authorization": f"Bearer {API_KEY}"}
    return {}


CHECKS = [st_checks.not_a_server_error, oa_checks.status_code_conformance,
          oa_checks.content_type_conformance, oa_checks.response_schema_conformance,
          oa_checks.response_headers_conformance, no_secret_in_response]


@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api(case: Any, gateway: GatewayProc) -> None:
    headers = case.headers or {}
    if "Authorization" not in headers:
        headers = {**credentials(case, gateway.base), **headers}
    with requests.Session() as http:
        case.call_and_validate(base_url=gateway.base, session=http, headers=headers,
                               checks=CHECKS, timeout=15)
