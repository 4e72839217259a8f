"""Supervisors on a live call: listen-in, coaching, takeover and hand-back.

``supervision`` (one call's listeners, mix and takeover), ``mix`` (the listen-in mix, one
Opus encode per layout fanned out to every listener), ``peer`` (the listener's WebRTC peer),
``takeover`` (the supervisor's microphone to the caller, the agent paused).

May import: call, legs, upstream, audio, obs, config/ids/errors. The routes are
``gateway.api.supervise``.
"""
