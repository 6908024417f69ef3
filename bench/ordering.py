"""What tracking the newest event per Stripe object costs a delivery.

    python bench/ordering.py [--deliveries 4500] [--pairs 150] [--pg-url URL] [--quick]

The same flask-stripe-hooks app twice, each on a fresh database, delivered the same blocks of
signed events in pairs (as ``ingest.py`` does): one records, in each event's transaction, the
newest event applied to its object (what ``latest_only`` handlers and ``event.is_stale`` read),
the other skips that statement. The ratio printed is the median over the pairs of (time with
tracking) / (time without), with a 95% bootstrap interval: 1.05 would be 5% slower.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flask_stripe_hooks import processing  # noqa: E402

import ingest  # noqa: E402

_TRACK = processing.track_newest


def _tracking() -> None:
    processing.track_newest = _TRACK  # type: ignore[attr-defined]


def _not_tracking() -> None:
    processing.track_newest = lambda *args: None  # type: ignore[attr-defined]


def line(rates: dict[str, float], ratio: float, low: float, high: float) -> str:
    return (
        f"tracking {rates['with']:7.0f}/s   without {rates['without']:7.0f}/s   time ratio"
        f" {ratio:.3f}x, 95% interval {low:.3f}-{high:.3f}; total rates"
        f" {rates['without'] / rates['with']:.3f}x"
        f"   {'PASS' if ratio <= 1.05 else 'MISS'} (target: at most 5% slower)"
    )


def main() -> None:
    contenders = {"without": ("fsh", {}), "with": ("fsh", {})}
    before = {"without": _not_tracking, "with": _tracking}
    ingest.paired_main(__doc__, contenders, line, before=before)
    _tracking()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
