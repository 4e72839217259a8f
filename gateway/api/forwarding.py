"""A request about a call that another instance owns is answered by that instance.

Hangup, resume (``POST /v1/realtime/calls`` with ``Bearer rs_…``) and the admin's end-call
can reach any instance behind a load balancer. When the call is not here, the registry names
its owner (``CallInfo.instance_id``, or the resume token's entry) and the owner's heartbeat
its internal URL; the request goes there with its method, path, query, body and the headers
that carry its meaning (auth, content type), marked with :data:`FORWARDED` so it is never
forwarded twice. The owner's answer (status, body, content type, ``Location``) is relayed
as is. An owner that does not answer is a 502 in OpenAI's error shape.

Handlers call :func:`forward_to_owner` when their local lookup misses; ``None`` means no
other instance owns the call and the handler answers as it always did (usually a 404).
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web

from gateway.errors import ApiError

from .appkeys import CONFIG, HTTP, REGISTRY

log = logging.getLogger("gateway.forwarding")

#: Set on a forwarded request (value: the forwarding instance). Never forwarded again.
FORWARDED = "X-Gateway-Forwarded"
_REQUEST_HEADERS = ("Authorization", "Content-Type", "Accept", "OpenAI-Beta")
_RESPONSE_HEADERS = ("Content-Type", "Location", "Retry-After")


async def owner_of(request: web.Request, *, call_id: str | None = None,
                   resume_token: str | None = None) -> str | None:
    """The id of the instance that owns the call, when it is another instance."""
    registry = request.app[REGISTRY]
    owner: str | None = None
    if call_id is not None:
        info = await registry.get_call(call_id)
        owner = info.instance_id if info is not None else None
    elif resume_token is not None:
        hit = await registry.get_resume(resume_token)
        owner = hit[1] if hit is not None else None
    if owner is None or owner == request.app[CONFIG].server.instance_id:
        return None
    return owner


async def forward_to_owner(request: web.Request, *, call_id: str | None = None,
                           resume_token: str | None = None) -> web.Response | None:
    """Proxy ``request`` to the instance owning the call; ``None`` to answer locally."""
    if FORWARDED in request.headers:
        return None  # we are the owner the registry named: answer here, whatever the answer
    owner = await owner_of(request, call_id=call_id, resume_token=resume_token)
    if owner is None:
        return None
    app = request.app
    config = app[CONFIG]
    base = (await app[REGISTRY].instances()).get(owner)
    if not base:
        # Its heartbeat stopped: the call died with it (a survivor reports it lost).
        log.info("%s %s: owner %s has no heartbeat", request.method, request.path, owner)
        return None
    body = await request.read()
    headers = {h: request.headers[h] for h in _REQUEST_HEADERS if h in request.headers}
    headers[FORWARDED] = config.server.instance_id
    timeout = aiohttp.ClientTimeout(total=config.registry.forward_timeout_s,
                                    sock_connect=min(3.0, config.registry.forward_timeout_s))
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with app[HTTP].request(request.method, base + request.rel_url.path_qs,
                                     data=body, headers=headers, timeout=timeout,
                                     allow_redirects=False) as r:
            data = await r.read()
            out = web.Response(status=r.status, body=data, headers={
                h: r.headers[h] for h in _RESPONSE_HEADERS if h in r.headers})
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        log.warning("%s %s: owner %s at %s did not answer (%s)", request.method, request.path,
                    owner, base, type(e).__name__)
        raise ApiError(502, "owner_unreachable", "The gateway instance that holds this call "
                       "did not answer; retry shortly.", type_="server_error",
                       headers={"Retry-After": "1"}) from e
    log.info("%s %s forwarded to owner %s: %d in %.0f ms", request.method, request.path,
             owner, r.status, (loop.time() - started) * 1000)
    return out
