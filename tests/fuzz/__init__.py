"""Fuzzing (issue 23): the HTTP API from its OpenAPI document, and the parsers the gateway
reaches, each harness a pure ``one_input(data: bytes)`` run briefly here and at length by
``make fuzz`` (``python -m tests.fuzz``)."""
