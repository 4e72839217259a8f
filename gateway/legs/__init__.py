"""Downstream legs: each knows its transport and nothing about the call.

WebRTC (``webrtc``, ``ice``, ``inbound``/``jitter`` in, ``tracks``/``playout``/``opus_out``
out), WebSocket (``websocket``), Twilio media (``twilio_leg``, ``twilio_audio``); ``base``
states what a leg tells its call (``LegSink``) and what the call asks of a leg (``Leg``).

May import: audio, obs, config/ids/errors. No routes, no tokens, no app keys.
"""
