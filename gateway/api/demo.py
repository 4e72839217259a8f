"""The demo page and its token route (off unless ``server.demo_enabled``).

``POST /api/session`` plays the part of the tutorial's backend: it mints an ephemeral
token for the browser. It needs no API key, which is why it only exists in demo mode.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.errors import ApiError

from .appkeys import CONFIG, FACTORY, METRICS, TOKENS

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
    try:
        body = await request.json()
    except ValueError:
        body = {}
    name = body.get("profile") if isinstance(body, dict) else None
    profile = cfg.profiles.get(name) if isinstance(name, str) else \
        cfg.profiles[cfg.default_profile]
    if profile is None:
        raise ApiError(400, "model_not_found", "Unknown agent profile.", param="profile")
    dialect = "beta" if isinstance(body, dict) and body.get("dialect") == "beta" else "ga"
    session = request.app[FACTORY].base_session(profile)
    value, expires_at = await request.app[TOKENS].mint(
        profile=profile.name, session=session, ttl_s=cfg.tokens.default_ttl_s, dialect=dialect)
    request.app[METRICS].tokens_minted.labels("demo").inc()
    reply: dict[str, object] = {"value": value, "expires_at": expires_at}
    if ice_servers := request.app[FACTORY].ice.client_ice_servers(user="demo"):
        reply["ice_servers"] = ice_servers  # extension: docs/networking.md
    return web.json_response(reply)


def setup(app: web.Application) -> None:
    """Static client library always; the page and the keyless token route only in demo mode."""
    app.router.add_static("/static", STATIC, show_index=False)
    if app[CONFIG].server.demo_enabled:
        app.add_routes(routes)
