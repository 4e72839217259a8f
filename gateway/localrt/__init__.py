"""An offline, protocol-faithful stand-in for the OpenAI Realtime API (GA dialect).

silero VAD -> pocketsphinx (domain LM, generic fallback) -> a rule-based agent -> piper TTS,
served at ``/v1/realtime``. The gateway core never imports this package: it reaches the engine
by URL, as it reaches OpenAI. Entry points: ``server.make_app`` and ``server.main``.
"""
