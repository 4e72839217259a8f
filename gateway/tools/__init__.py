"""Server-side tools: their declarations (JSON schema) and their execution."""
