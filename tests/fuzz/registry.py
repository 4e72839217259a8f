"""Every harness, by name (``python -m tests.fuzz --help``)."""

from __future__ import annotations

from .harness import Harness
from .harness_events import EVENTS, POLICY, TWILIO
from .harness_media import RTP, SCTP, SDP, STUN

HARNESSES: dict[str, Harness] = {h.name: h for h in (SDP, STUN, RTP, SCTP, EVENTS, POLICY,
                                                     TWILIO)}
