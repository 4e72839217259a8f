"""A recordings root with finalized calls over several days (fabricated in the recorder's
format: the recorder itself only records 'now')."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from .signals import fabricate


def ts(s: str) -> float:
    return datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp()


#: call id -> (start, caller, agent)
CALLS = {
    "rtc_a1": ("2025-03-01T09:00:00", "+15550000001", "sales"),
    "rtc_a2": ("2025-03-01T17:30:00", "+15550000002", "support"),
    "rtc_b1": ("2025-03-02T08:00:00", "+15550000001", "support"),
    "rtc_b2": ("2025-03-02T08:00:00", "+15550000003", "sales"),  # same second as b1
    "rtc_c1": ("2025-03-05T23:59:59", None, "support"),
    "rtc_d1": ("2025-04-10T12:00:00", "+15550000001", "sales"),
}
#: newest first, ties broken by id (descending)
ORDER = ["rtc_d1", "rtc_c1", "rtc_b2", "rtc_b1", "rtc_a2", "rtc_a1"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "recordings"
    for call_id, (start, caller, agent) in CALLS.items():
        fabricate(r, call_id, started_at=ts(start), caller=caller, agent=agent)
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    return r
