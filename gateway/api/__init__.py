"""The HTTP/WebSocket edge: every route the gateway serves, and nothing below imports it.

Realtime HTTP (``realtime_http``: client secrets, WebRTC calls, hangup) and WebSocket
(``realtime_ws``), Twilio's webhook and media stream (``twilio``), admin and recordings
(``admin``, ``recordings``), supervision (``supervise``), operations (``ops``), the demo
(``demo``); request parsing, auth (``tokens``), forwarding a request to the instance that owns
its call (``forwarding``) and the typed app state (``appkeys``).

May import: every layer below (supervise, call, cluster, legs, upstream, recording, tools,
obs, audio, config/ids/errors). Imported by: ``gateway.app`` and ``gateway.lifecycle`` only.
"""
