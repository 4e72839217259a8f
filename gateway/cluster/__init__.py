"""More than one instance: the registry, workers, and merged metrics.

``registry`` (the ``Registry`` protocol, its in-memory backend, ``LocalCalls``),
``redis_registry`` (the shared backend with heartbeats and lost-call reporting), ``workers``
(``serve --workers N`` behind one port), ``metrics_merge`` (one ``/metrics`` for all workers).

May import: recording, obs, config/ids/errors. Request forwarding is HTTP, so it lives at the
edge (``gateway.api.forwarding``), reading the registry from here.
"""
