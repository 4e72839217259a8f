"""Observability: Prometheus metrics (defined once), the per-frame hot metrics, JSON logs.

May import: config/ids/errors only. Everything above may import it.
"""
