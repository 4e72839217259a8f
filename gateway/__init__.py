"""A realtime voice gateway that stands where the OpenAI Realtime API stood."""

__version__ = "0.1.0"
