"""The demo page and its token route (off unless ``server.demo_enabled``).

``POST /api/session`` plays the part of the tutorial's backend: it mints an ephemeral
token for the browser. It needs no API key, which is why it only exists in demo mode.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.errors import ApiError, bad_request

from .appkeys import CONFIG, FACTORY, METRICS, TOKENS
from .jsonbody import read_json_object

STATIC = Path(__file__).parent.parent / "static"
routes = web.RouteTableDef()


@routes.get("/")
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


@routes.get("/api/profiles")
async def profiles(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG]
    return web.json_response({"profiles": [
        {"name": p.name, "model": p.model} for p in cfg.profiles.values()]})


@routes.post("/api/session")
async def demo_session(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG]
    # The demo page posts {"profile", "dialect"}; an empty body is the default profile. A
    # body that is not a JSON object, or fields of the wrong kind, are 400s (they were
    # ignored: a 200 for garbage).
    body = await read_json_object(request)
    name = body.get("profile")
    if name is not None and not isinstance(name, str):
        raise bad_request("invalid_type", "profile must be a string.", "profile")
    profile = cfg.profiles[cfg.default_profile] if name is None else cfg.profiles.get(name)
    if profile is None:
        raise ApiError(400, "model_not_found", "Unknown agent profile.", param="profile")
    dialect = "ga" if body.get("dialect") is None else body["dialect"]
    if dialect not in ("ga", "beta"):
        raise bad_request("invalid_value", "dialect must be 'ga' or 'beta'.", "dialect")
    session = request.app[FACTORY].base_session(profile)
    value, expires_at = await request.app[TOKENS].mint(
        profile=profile.name, session=session, ttl_s=cfg.tokens.default_ttl_s, dialect=dialect)
    request.app[METRICS].tokens_minted.labels("demo").inc()
    reply: dict[str, object] = {"value": value, "expires_at": expires_at}
    if ice_servers := request.app[FACTORY].ice.client_ice_servers(user="demo"):
        reply["ice_servers"] = ice_servers  # extension: docs/networking.md
    return web.json_response(reply)


async def static_file(request: web.Request) -> web.FileResponse:
    # Only the files shipped in static/ (a flat directory): no path is ever built from the
    # request, and a miss is an OpenAI-shaped 404 (aiohttp's static route answered an empty
    # application/octet-stream 404).
    name = request.match_info["filename"]
    if name not in _STATIC_FILES:
        raise ApiError(404, "not_found", "No such file.")
    return web.FileResponse(STATIC / name)


_STATIC_FILES = frozenset(p.name for p in STATIC.iterdir() if p.is_file())


def setup(app: web.Application) -> None:
    """Static client library always; the page and the keyless token route only in demo mode."""
    app.router.add_get("/static/{filename}", static_file)
    if app[CONFIG].server.demo_enabled:
        app.add_routes(routes)
