"""The Realtime WebSocket client (GA) and the beta <-> GA dialect translation."""
