"""The GPT-Live routes and the transcription-session route in the OpenAPI description."""

from __future__ import annotations

from .openapi_schema import (
    ANY_OBJ,
    API_KEY,
    INT,
    STR,
    WS_UPGRADE,
    Obj,
    errors,
    json_body,
    obj,
    path_param,
)

SESSION_ID = path_param("session_id", "A live Live session's id (the gateway's call id).")
LIVE_SESSION = {"type": "object", "description": "A GPT-Live session config "
                "(`openai.types.live`); strict: unknown fields are refused."}
LIVE_SECRET = obj({"value": {"type": "string", "pattern": "^ek_"}, "expires_at": INT,
                   "session": ANY_OBJ}, ("value", "expires_at", "session"))
CALLER: list[Obj] = [{"apiKey": []}, {"ephemeralToken": []}]


def _session_route(action: str, summary: str, responses: Obj,
                   served: bool = True) -> Obj:
    op: Obj = {"operationId": f"live{action.title()}", "tags": ["live"],
               "security": API_KEY, "parameters": [SESSION_ID], "summary": summary,
               "responses": responses}
    if not served:  # OpenAI's route, answered here only with why it is not served
        op["x-not-served"] = True
    return {"post": op}


def live_ops() -> dict[str, Obj]:
    p: dict[str, Obj] = {}
    p["/v1/live/sessions"] = {
        "get": {"operationId": "liveWebSocket", "tags": ["live"], "security": CALLER,
                "summary": "GPT-Live over a WebSocket: `session.start` first, then Live "
                           "events.",
                "responses": {"101": WS_UPGRADE, **errors(400, 401, 503)}},
        "post": {"operationId": "liveCreate", "tags": ["live"], "security": CALLER,
                 "summary": "GPT-Live over WebRTC: `{session, transport: {type: \"webrtc\", "
                            "sdp}}` in, the answer out (or resume with `rs_…`).",
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": obj({"session": LIVE_SESSION, "transport": obj(
                         {"type": {"type": "string", "enum": ["webrtc"]}, "sdp": STR})})}}},
                 "responses": {"200": json_body(ANY_OBJ),
                               **errors(400, 401, 404, 413, 415, 502, 503)}}}
    p["/v1/live/client_secrets"] = {"post": {
        "operationId": "liveClientSecret", "tags": ["live"], "security": API_KEY,
        "summary": "Mint an ephemeral token bound to a Live session config.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": obj(
            {"session": LIVE_SESSION, "expires_after": ANY_OBJ,
             "recording_consent": {"type": "boolean"}})}}},
        "responses": {"200": json_body(LIVE_SECRET), **errors(400, 401, 413, 415)}}}
    p["/v1/live/sessions/{session_id}/hangup"] = _session_route(
        "hangup", "End a Live session.",
        {"200": {"description": "Ended."}, **errors(401, 404)})
    for action in ("accept", "reject", "refer", "fork"):
        p[f"/v1/live/sessions/{{session_id}}/{action}"] = _session_route(
            action, f"Not served (SIP/stored sessions): `{action}` answers 400.",
            errors(400, 401, 404), served=False)
    p["/v1/live/sessions/{session_id}/attach"] = {"get": {
        "operationId": "liveAttach", "tags": ["live"], "security": API_KEY,
        "parameters": [SESSION_ID],
        "summary": "Sideband: the app's server attaches to a live Live session.",
        "responses": {"101": WS_UPGRADE, **errors(400, 401, 404)}}}
    p["/v1/live/sessions/{session_id}/content"] = {"get": {
        "operationId": "liveContent", "tags": ["live"], "security": API_KEY,
        "parameters": [SESSION_ID],
        "summary": "Not served: Live sessions are recorded by the gateway instead.",
        "x-not-served": True, "responses": errors(401, 404)}}
    p["/v1/realtime/transcription_sessions"] = {"post": {
        "operationId": "betaCreateTranscriptionSession", "tags": ["beta"],
        "security": API_KEY,
        "summary": "Beta: mint an ephemeral key for a transcription session.",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": ANY_OBJ}}},
        "responses": {"200": json_body(ANY_OBJ), **errors(400, 401, 413, 415)}}}
    return p
