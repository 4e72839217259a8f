"""Server-side tools: their declarations (JSON schema) and their execution.

May import: config/ids/errors only.
"""
