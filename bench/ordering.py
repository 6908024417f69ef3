"""What tracking the newest event per Stripe object costs a delivery.

    python bench/ordering.py [--deliveries 4500] [--pairs 150] [--pg-url URL] [--quick]

The same flask-stripe-hooks app twice, each on a fresh database, delivered the same blocks of
signed events in pairs (as ``ingest.py`` does): one records, in each event's transaction, the
newest event applied to its object (what ``latest_only`` handlers and ``event.is_stale`` read;
on PostgreSQL in the same statement as the event's INSERT), the other does not. The ratio
printed is the median over the pairs of (time with tracking) / (time without), with a 95%
bootstrap interval: 1.05 would be 5% slower.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flask_stripe_hooks.pipeline import attempt, run, storage  # noqa: E402

import ingest  # noqa: E402

_TRACKED = attempt.insert_tracked_event, run.track_newest


def _untracked(connection: Any, values: Any, track: Any) -> tuple[bool, None]:
    return bool(storage.insert_event(connection, values)), None


def _tracking() -> None:
    attempt.insert_tracked_event, run.track_newest = _TRACKED  # type: ignore[attr-defined]


def _not_tracking() -> None:
    attempt.insert_tracked_event = _untracked  # type: ignore[attr-defined]
    run.track_newest = lambda *args: None  # type: ignore[attr-defined]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    ingest.switch(__doc__, ("tracking", _tracking), ("without", _not_tracking), target=1.05)
