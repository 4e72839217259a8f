"""``GET /openapi.json`` describes exactly the routes the app registers, and is valid OpenAPI."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web
from openapi_spec_validator import validate

from gateway.api.openapi import document
from tests.gateway_fixtures import running_gateway

SECRETS = ("sk-upstream-secret-never-shown", "sk-gw-test-key", "test-secret", "admin-test-token")
METHODS = {"get", "post", "put", "delete", "patch", "options", "head"}


def registered(app: web.Application) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route; GET's automatic HEAD twin is not an operation."""
    out: set[tuple[str, str]] = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        if path is None and "prefix" in info:  # add_static: one route for every file under it
            path = info["prefix"] + "/{filename}"
        assert isinstance(path, str), info
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)
        out.add((route.method.lower(), path))
    gets = {p for m, p in out if m == "get"}
    return {(m, p) for m, p in out if not (m == "head" and p in gets)}


def described(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m, p) for p, ops in doc["paths"].items() for m in ops if m in METHODS}


async def test_document_matches_routes_both_ways() -> None:
    env = {"GATEWAY_DEMO_ENABLED": "true", "TWILIO_AUTH_TOKEN": "tw-test"}
    async with running_gateway("ws://127.0.0.1:9/v1/realtime", env=env) as gw:
        routes = registered(gw.app)
        async with gw.http.get(f"{gw.base}/openapi.json") as r:  # no credentials
            assert r.status == 200
            assert r.content_type == "application/json"
            text = await r.text()
    doc = json.loads(text)
    assert doc == json.loads(json.dumps(document()))
    missing = routes - described(doc)
    extra = described(doc) - routes
    assert not missing, f"routes the document does not describe: {sorted(missing)}"
    assert not extra, f"operations the app does not register: {sorted(extra)}"
    for s in SECRETS:
        assert s not in text


def test_document_is_valid_openapi_31() -> None:
    doc = document()
    validate(doc)  # raises on an invalid document
    assert doc["openapi"].startswith("3.1")
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            # Every operation can succeed, but OpenAI's routes the gateway answers only with
            # why it does not serve them (marked so in the document).
            assert any(c.startswith(("1", "2")) for c in codes) or op.get("x-not-served"), \
                (method, path)
            for code, resp in op["responses"].items():
                if code[0] in "45" and "$ref" in resp:
                    ref = resp["$ref"].rsplit("/", 1)[-1]
                    schema = doc["components"]["responses"][ref]["content"][
                        "application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}


def test_error_schema_is_openai_shape() -> None:
    err = document()["components"]["schemas"]["Error"]
    inner = err["properties"]["error"]
    assert set(inner["required"]) == {"type", "code", "message", "param"}
    assert inner["additionalProperties"] is False
