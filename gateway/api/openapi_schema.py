"""The parts of the gateway's OpenAPI description that every group of routes uses: value
schemas, the error shape and its responses, parameters, security schemes."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

ERROR_REF = {"$ref": "#/components/schemas/Error"}
STR: Obj = {"type": "string"}
INT: Obj = {"type": "integer"}
ANY_OBJ: Obj = {"type": "object"}

#: Why each error status is answered (the description of the shared error response).
STATUS_TEXT = {
    400: "Bad request: invalid JSON, parameter or SDP offer.",
    401: "Missing or wrong credentials.",
    403: "Missing or wrong Twilio signature.",
    404: "No such call, listener, recording or profile.",
    405: "Method not allowed.",
    409: "Conflict with the resource's state.",
    413: "Body over `server.max_body_bytes`.",
    415: "Unsupported content type.",
    416: "Range not satisfiable.",
    502: "The upstream (or object storage) failed.",
    503: "Full, draining, or the feature is not configured.",
}


def errors(*statuses: int) -> Obj:
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses}


def json_body(schema: Obj, description: str = "OK") -> Obj:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def obj(props: Obj, required: tuple[str, ...] = (), *, extra: bool = True) -> Obj:
    out: Obj = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if not extra:
        out["additionalProperties"] = False
    return out


def path_param(name: str, description: str) -> Obj:
    return {"name": name, "in": "path", "required": True, "schema": STR,
            "description": description}


def query(name: str, schema: Obj, description: str) -> Obj:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


SDP_BODY: Obj = {"required": True, "content": {"application/sdp": {"schema": STR}}}
SDP_ANSWER: Obj = {
    "description": "The SDP answer; `Location` names the call (or the listener).",
    "headers": {"Location": {"schema": STR}},
    "content": {"application/sdp": {"schema": STR}},
}
WS_UPGRADE: Obj = {"description": "Switching Protocols: the WebSocket is open."}
API_KEY: list[Obj] = [{"apiKey": []}]
ADMIN: list[Obj] = [{"adminToken": []}]
CALL_ID = path_param("call_id", "A live call's id (`rtc_…`).")
REC_ID = path_param("id", "A recorded call's id.")
LAYOUT = query("layout", {"type": "string", "enum": ["mono", "stereo"]},
                "The listen-in mix: mono, or caller left / agent right.")

SESSION = {"type": "object", "description": "A GA Realtime session config (`RealtimeSession"
           "CreateRequest`); fields a profile locks are refused for token holders."}
EXPIRES_AFTER = obj({"anchor": {"type": "string", "enum": ["created_at"]},
                      "seconds": INT})
CLIENT_SECRET_REQ = obj({"session": SESSION, "expires_after": EXPIRES_AFTER,
                          "recording_consent": {"type": "boolean"}})
ICE_SERVERS = {"type": "array", "items": ANY_OBJ,
               "description": "Extension: STUN/TURN servers for the browser (networking.md)."}
CLIENT_SECRET = obj({"value": {"type": "string", "pattern": "^ek_"}, "expires_at": INT,
                      "session": ANY_OBJ, "ice_servers": ICE_SERVERS},
                     ("value", "expires_at", "session"))
BETA_SESSION = obj({"client_secret": obj({"value": STR, "expires_at": INT},
                                           ("value", "expires_at"))}, ("client_secret",))
MULTIPART = obj({"sdp": {"type": "string", "description": "The SDP offer."},
                  "session": {"type": "string", "description": "A JSON session object."}},
                 ("sdp",))



def components() -> Obj:
    error = obj({"error": obj({
        "type": STR, "code": STR, "message": STR,
        "param": {"type": ["string", "null"]}}, ("type", "code", "message", "param"),
        extra=False)}, ("error",), extra=False)
    bearer = {"type": "http", "scheme": "bearer"}
    return {
        "schemas": {"Error": error},
        "responses": {f"E{s}": json_body(ERROR_REF, text) for s, text in STATUS_TEXT.items()},
        "securitySchemes": {
            "apiKey": dict(bearer, description="A gateway API key (`GATEWAY_API_KEYS`)."),
            "ephemeralToken": dict(bearer, description="An `ek_…` token from client_secrets, "
                                   "single use."),
            "resumeToken": dict(bearer, description="An `rs_…` token from "
                                "`gateway.call.created`, to resume a suspended call."),
            "adminToken": dict(bearer, description="`GATEWAY_ADMIN_TOKEN`; without one "
                               "configured the admin API answers 503."),
            "twilioSignature": {"type": "apiKey", "in": "header", "name": "X-Twilio-Signature",
                                "description": "HMAC of the URL and form with "
                                "TWILIO_AUTH_TOKEN."},
        },
    }
