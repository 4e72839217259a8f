"""JSON request bodies within the gateway's size and depth limits, as OpenAI-shaped errors.

Every route that parses a JSON body (token routes, the demo route, admin) goes through
:func:`parse_json`: a document nested too deep is a 400 ``invalid_json``, one over the size
limit a 413 ``body_too_large``; neither reaches ``json.loads``' recursion.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from gateway.errors import ApiError, bad_request
from gateway.jsonlimits import DEFAULT_MAX_DEPTH, JsonTooDeep, JsonTooLarge, loads_limited

from .appkeys import CONFIG


def parse_json(data: bytes | str, *, max_bytes: int, param: str | None = None,
               what: str = "The body") -> Any:
    try:
        return loads_limited(data, max_bytes=max_bytes, max_depth=DEFAULT_MAX_DEPTH)
    except JsonTooLarge as e:
        raise ApiError(413, "body_too_large", f"{what} is over the size limit of "
                       f"{e.max_bytes} bytes.", param=param) from e
    except JsonTooDeep as e:
        raise bad_request("invalid_json", f"{what} nests JSON deeper than {e.max_depth} "
                          "levels.", param) from e
    except ValueError as e:
        raise bad_request("invalid_json", f"{what} is not valid JSON.", param) from e


async def read_body(request: web.Request) -> bytes:
    """The whole body, within ``server.body_timeout_s`` (a client trickling a body would
    otherwise hold its connection and handler for ever): 408 when it is slower."""
    try:
        async with asyncio.timeout(request.app[CONFIG].server.body_timeout_s):
            return await request.read()
    except TimeoutError as e:
        raise ApiError(408, "request_timeout", "The request body did not arrive in time.",
                       headers={"Connection": "close"}) from e


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request's body as a JSON object (``{}`` when empty)."""
    raw = await read_body(request)
    body = parse_json(raw or b"{}", max_bytes=request.app[CONFIG].server.max_body_bytes)
    if not isinstance(body, dict):
        raise bad_request("invalid_json", "The body must be a JSON object.")
    return body
