"""``GET /openapi.json``: an OpenAPI 3.1 description of the gateway's own HTTP API.

Built from code, once per process, so it is data (no secrets, no config values: the same
document on every deployment). ``tests/test_openapi.py`` fails when a route registered in the
app is missing here or a described one is not registered, and the fuzzers in ``tests/fuzz``
drive every operation from it (schemathesis): a status or a body the document does not
declare is a finding, so the statuses below are the ones the handlers really answer.
"""

from __future__ import annotations

import json

from aiohttp import web

from .openapi_live import live_ops
from .openapi_schema import (
    ADMIN,
    ANY_OBJ,
    API_KEY,
    BETA_SESSION,
    CALL_ID,
    CLIENT_SECRET,
    CLIENT_SECRET_REQ,
    ICE_SERVERS,
    INT,
    LAYOUT,
    MULTIPART,
    REC_ID,
    SDP_ANSWER,
    SDP_BODY,
    STR,
    WS_UPGRADE,
    Obj,
    components,
    errors,
    json_body,
    obj,
    path_param,
    query,
)

routes = web.RouteTableDef()

def _ops() -> dict[str, Obj]:
    """Every path and operation, in the order of ``api/``'s modules."""
    p: dict[str, Obj] = {}
    p["/v1/realtime/client_secrets"] = {"post": {
        "operationId": "createClientSecret", "tags": ["realtime"], "security": API_KEY,
        "summary": "Mint an ephemeral token (`ek_…`) bound to a session config.",
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": CLIENT_SECRET_REQ}}},
        "responses": {"200": json_body(CLIENT_SECRET), **errors(400, 401, 413, 415)}}}
    p["/v1/realtime/calls"] = {"post": {
        "operationId": "createCall", "tags": ["realtime"],
        "security": [{"ephemeralToken": []}, {"resumeToken": []}, {"apiKey": []}],
        "summary": "Start (or, with `rs_…`, resume) a WebRTC call.",
        "description": "`application/sdp` with an `ek_` (or `rs_`) token, or "
                       "`multipart/form-data` (`sdp`, `session`) with an API key.",
        "requestBody": {"required": True, "content": {
            "application/sdp": {"schema": STR},
            "multipart/form-data": {"schema": MULTIPART}}},
        "responses": {"201": SDP_ANSWER, **errors(400, 401, 404, 413, 415, 502, 503)}}}
    p["/v1/realtime/calls/{call_id}/hangup"] = {"post": {
        "operationId": "hangupCall", "tags": ["realtime"], "security": API_KEY,
        "parameters": [CALL_ID], "summary": "End a call.",
        "responses": {"200": json_body(obj({}, extra=False)), **errors(401, 404)}}}
    p["/v1/realtime"] = {
        "get": {"operationId": "realtimeWebSocket", "tags": ["realtime"],
                "security": [{"apiKey": []}, {"ephemeralToken": []}],
                "summary": "Realtime over a WebSocket (GA, or beta with `OpenAI-Beta: "
                           "realtime=v1` or the `openai-beta.realtime-v1` subprotocol).",
                "description": "A credential may also come as the subprotocol "
                               "`openai-insecure-api-key.<key>`. Without `Upgrade: websocket`"
                               " the answer is 400 `websocket_required`.",
                "parameters": [query("model", STR, "Picks the profile (with an API key)."),
                               query("intent", STR, "`transcription`: a transcription "
                                     "session."),
                               query("call_id", STR, "Sideband: attach to this live call "
                                     "(API key only).")],
                "responses": {"101": WS_UPGRADE, **errors(400, 401, 403, 404, 503)}},
        "post": {"operationId": "betaCreateCall", "tags": ["beta"],
                 "security": [{"apiKey": []}, {"ephemeralToken": []}],
                 "summary": "Beta WebRTC: SDP offer in, answer out (beta data channel).",
                 "parameters": [query("model", STR, "Picks the profile (with an API key).")],
                 "requestBody": SDP_BODY,
                 "responses": {"201": SDP_ANSWER,
                               **errors(400, 401, 404, 413, 415, 502, 503)}}}
    p["/v1/realtime/sessions"] = {"post": {
        "operationId": "betaCreateSession", "tags": ["beta"], "security": API_KEY,
        "summary": "Beta: mint an ephemeral key, answered as the beta session object.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": obj(
            {"model": STR})}}},
        "responses": {"200": json_body(BETA_SESSION), **errors(400, 401, 413, 415)}}}
    p["/twilio/incoming"] = {"post": {
        "operationId": "twilioIncoming", "tags": ["twilio"], "security": [{"twilioSignature": []}],
        "summary": "Twilio's voice webhook: answers TwiML `<Connect><Stream>` with a call token.",
        "parameters": [query("profile", STR, "The agent profile (default profile if absent).")],
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {
            "schema": obj({"CallSid": STR, "From": STR})}}},
        "responses": {"200": {"description": "TwiML", "content": {"text/xml": {"schema": STR}}},
                      **errors(403, 404, 413, 503)}}}
    p["/twilio/media-stream"] = {"get": {
        "operationId": "twilioMediaStream", "tags": ["twilio"],
        "security": [{"twilioSignature": []}, {}],
        "summary": "Twilio Media Streams WebSocket; the call token arrives in `start`.",
        "responses": {"101": WS_UPGRADE, **errors(400, 403, 503)}}}
    p.update(_admin_ops())
    p.update(_ops_and_demo())
    return p


def _admin_ops() -> dict[str, Obj]:
    p: dict[str, Obj] = {}
    common = errors(401, 503)
    p["/admin/calls"] = {"get": {
        "operationId": "listCalls", "tags": ["admin"], "security": ADMIN,
        "summary": "Live calls of every instance.",
        "responses": {"200": json_body(obj({"object": STR, "data": {"type": "array"}},
                                        ("object", "data"))), **common}}}
    p["/admin/calls/{call_id}"] = {"delete": {
        "operationId": "endCall", "tags": ["admin"], "security": ADMIN, "parameters": [CALL_ID],
        "summary": "End a live call (`admin_ended`).",
        "responses": {"200": json_body(obj({"id": STR, "ended": {"type": "boolean"}})),
                      **errors(401, 404, 503)}}}
    p["/admin/recordings"] = {"get": {
        "operationId": "listRecordings", "tags": ["recordings"], "security": ADMIN,
        "summary": "Recorded calls, newest first, with filters and a cursor.",
        "parameters": [
            query("from", STR, "Started at or after (ISO 8601 or unix seconds)."),
            query("to", STR, "Started before (ISO 8601 or unix seconds)."),
            query("caller", STR, "Caller (phone number or identity)."),
            query("agent", STR, "Agent profile."),
            query("limit", INT, "Page size (1 to 1000)."),
            query("cursor", STR, "`next_cursor` of the previous page.")],
        "responses": {"200": json_body(obj({"object": STR, "data": {"type": "array"},
                                         "has_more": {"type": "boolean"}},
                                        ("object", "data", "has_more"))),
                      **errors(400, 401, 502, 503)}}}
    p["/admin/recordings/{id}"] = {
        "get": {"operationId": "getRecording", "tags": ["recordings"], "security": ADMIN,
                "parameters": [REC_ID], "summary": "A recording's metadata.",
                "responses": {"200": json_body(obj({"object": STR, "id": STR})),
                              **errors(400, 401, 404, 409, 502, 503)}},
        "delete": {"operationId": "deleteRecording", "tags": ["recordings"], "security": ADMIN,
                   "parameters": [REC_ID], "summary": "Delete a recording (audited).",
                   "responses": {"200": json_body(obj({"id": STR, "object": STR,
                                                    "deleted": {"type": "boolean"}})),
                                 **errors(400, 401, 404, 409, 503)}}}
    p["/admin/recordings/{id}/audio"] = {"get": {
        "operationId": "getRecordingAudio", "tags": ["recordings"], "security": ADMIN,
        "summary": "The call's audio; HTTP `Range`/`If-Range` give partial content.",
        "parameters": [REC_ID, query("format", {"type": "string", "enum": ["wav", "opus"]},
                                      "Container (default wav).")],
        "responses": {
            "200": {"description": "The whole file.", "content": {
                "audio/wav": {"schema": {"type": "string", "format": "binary"}},
                "audio/ogg": {"schema": {"type": "string", "format": "binary"}}}},
            "206": {"description": "The requested range.", "content": {
                "audio/wav": {"schema": {"type": "string", "format": "binary"}},
                "audio/ogg": {"schema": {"type": "string", "format": "binary"}}}},
            **errors(400, 401, 404, 409, 416, 502, 503)}}}
    p["/admin/recordings/{id}/transcript"] = {"get": {
        "operationId": "getRecordingTranscript", "tags": ["recordings"], "security": ADMIN,
        "summary": "The call's transcript: NDJSON, or a JSON list with `format=json`.",
        "parameters": [REC_ID, query("format", STR, "`json` for a JSON list.")],
        "responses": {"200": {"description": "Transcript lines.", "content": {
            "application/x-ndjson": {"schema": STR},
            "application/json": {"schema": obj({"object": STR, "data": {"type": "array"}})}}},
            **errors(400, 401, 404, 409, 502, 503)}}}
    p.update(_supervise_ops())
    return p


def _supervise_ops() -> dict[str, Obj]:
    p: dict[str, Obj] = {}
    live = errors(400, 401, 404, 503)
    p["/admin/calls/{call_id}/listen"] = {"post": {
        "operationId": "listenToCall", "tags": ["supervise"], "security": ADMIN,
        "parameters": [CALL_ID, LAYOUT], "summary": "A WebRTC listener on a live call.",
        "requestBody": SDP_BODY, "responses": {"201": SDP_ANSWER, **live}}}
    p["/admin/calls/{call_id}/listeners"] = {"get": {
        "operationId": "listListeners", "tags": ["supervise"], "security": ADMIN,
        "parameters": [CALL_ID], "summary": "Listeners, the mix's counters, the takeover.",
        "responses": {"200": json_body(ANY_OBJ), **errors(401, 404, 503)}}}
    p["/admin/calls/{call_id}/listeners/{listener_id}"] = {"delete": {
        "operationId": "endListener", "tags": ["supervise"], "security": ADMIN,
        "parameters": [CALL_ID, path_param("listener_id", "A listener's id.")],
        "summary": "End one listener.",
        "responses": {"200": json_body(obj({"id": STR, "deleted": {"type": "boolean"}})),
                      **errors(401, 404, 503)}}}
    p["/admin/calls/{call_id}/coach"] = {"post": {
        "operationId": "coachCall", "tags": ["supervise"], "security": ADMIN,
        "parameters": [CALL_ID], "summary": "A system message for the agent's next turns.",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": obj({"text": STR}, ("text",))}}},
        "responses": {"200": json_body(obj({"call_id": STR, "item_id": STR})), **live}}}
    p["/admin/calls/{call_id}/takeover"] = {"post": {
        "operationId": "takeOverCall", "tags": ["supervise"], "security": ADMIN,
        "parameters": [CALL_ID, LAYOUT],
        "summary": "The supervisor's microphone to the caller; the agent paused.",
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": obj({"listener_id": STR}, ("listener_id",))},
            "application/sdp": {"schema": STR}}},
        "responses": {"200": json_body(obj({"call_id": STR, "listener_id": STR,
                                         "taken_over": {"type": "boolean"}})),
                      "201": SDP_ANSWER, **errors(400, 401, 404, 409, 503)}}}
    p["/admin/calls/{call_id}/handback"] = {"post": {
        "operationId": "handBackCall", "tags": ["supervise"], "security": ADMIN,
        "parameters": [CALL_ID], "summary": "The agent resumes, the takeover in its context.",
        "responses": {"200": json_body(obj({"call_id": STR, "handed_back": {"type": "boolean"}})),
                      **errors(401, 404, 409, 503)}}}
    return p


def _ops_and_demo() -> dict[str, Obj]:
    status = obj({"status": STR}, ("status",))
    p: dict[str, Obj] = {}
    p["/healthz"] = {"get": {"operationId": "healthz", "tags": ["ops"], "security": [],
                             "summary": "Liveness.", "responses": {"200": json_body(status)}}}
    p["/readyz"] = {"get": {"operationId": "readyz", "tags": ["ops"], "security": [],
                            "summary": "Readiness: 503 when draining or at capacity.",
                            "responses": {"200": json_body(status),
                                          "503": json_body(status, "Draining or full.")}}}
    p["/metrics"] = {"get": {
        "operationId": "metrics", "tags": ["ops"], "security": [],
        "summary": "Prometheus metrics (every worker's, unless `local=1`).",
        "parameters": [query("local", STR, "`1`: this worker only.")],
        "responses": {"200": {"description": "Prometheus text format.",
                              "content": {"text/plain": {"schema": STR}}}}}}
    p["/openapi.json"] = {"get": {"operationId": "openapi", "tags": ["ops"], "security": [],
                                  "summary": "This document.",
                                  "responses": {"200": json_body(ANY_OBJ)}}}
    p["/static/{filename}"] = {"get": {
        "operationId": "staticFile", "tags": ["demo"], "security": [],
        "summary": "The browser client library and the demo's assets.",
        "parameters": [path_param("filename", "A file under gateway/static.")],
        "responses": {"200": {"description": "The file.", "content": {"*/*": {}}},
                      **errors(403, 404)}}}
    demo = "Only with `server.demo_enabled`."
    p["/"] = {"get": {"operationId": "demoPage", "tags": ["demo"], "security": [],
                      "summary": "The demo page.", "description": demo,
                      "responses": {"200": {"description": "HTML", "content": {
                          "text/html": {"schema": STR}}}}}}
    p["/api/profiles"] = {"get": {
        "operationId": "demoProfiles", "tags": ["demo"], "security": [], "description": demo,
        "summary": "The agent profiles' names and models.",
        "responses": {"200": json_body(obj({"profiles": {"type": "array", "items": obj(
            {"name": STR, "model": STR})}}, ("profiles",)))}}}
    p["/api/session"] = {"post": {
        "operationId": "demoSession", "tags": ["demo"], "security": [], "description": demo,
        "summary": "Keyless token minting for the demo page.",
        "requestBody": {"required": False, "content": {"application/json": {"schema": obj(
            {"profile": STR, "dialect": {"type": "string", "enum": ["ga", "beta"]}})}}},
        "responses": {"200": json_body(obj({"value": STR, "expires_at": INT,
                                         "ice_servers": ICE_SERVERS},
                                        ("value", "expires_at"))),
                      **errors(400, 413)}}}
    return p


def document() -> Obj:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Voice gateway", "version": "1",
                 "description": "OpenAI Realtime-compatible HTTP API of the voice gateway, "
                                "its Twilio webhook, admin and ops routes. Errors are "
                                "`{\"error\": {\"type\", \"code\", \"message\", \"param\"}}`."},
        "paths": {**_ops(), **live_ops()},
        "components": components(),
    }


_BODY = json.dumps(document(), separators=(",", ":")).encode()


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type="application/json")
