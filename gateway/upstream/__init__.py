"""The Realtime WebSocket client (GA) and the beta <-> GA dialect translation.

May import: config/ids/errors only; the translation is pure functions.
"""
