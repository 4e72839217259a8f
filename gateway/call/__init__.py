"""The call core: one ``CallSession`` per call and what it composes.

``session`` (the call and its event routing), ``client_events`` / ``upstream_events`` (what
each side's events do), ``intake`` (caller audio in), ``agent_audio`` (agent audio out, what
was heard, barge-in), ``factory`` (sets a call up), ``policy`` (what a client may change),
``toolrounds`` (server-side tools), ``guards`` (idle, dead mic), ``continuity`` (upstream
reconnect and rollover), ``recording`` (the bridge to the recorder), ``dialect`` (the beta
attachment), ``state`` (small state types and hooks).

May import: cluster, legs, upstream, recording, tools, obs, audio, config/ids/errors.
Never: ``gateway.api``, ``gateway.supervise``, ``gateway.localrt``.
"""
