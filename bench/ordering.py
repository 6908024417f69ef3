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
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flask_stripe_hooks import processing  # noqa: E402

import common  # noqa: E402
import ingest  # noqa: E402
import payloads  # noqa: E402

_TRACK = processing.track_newest


def _tracking() -> None:
    processing.track_newest = _TRACK  # type: ignore[attr-defined]


def _not_tracking() -> None:
    processing.track_newest = lambda *args: None  # type: ignore[attr-defined]


def main() -> None:
    parser = ingest.run_arguments(__doc__)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = ingest.quick(parser.parse_args())
    print(f"machine: {common.machine()}")
    bodies = payloads.bodies(args.deliveries + args.warmup)
    print(f"payloads: {payloads.describe(bodies)}")
    contenders = {"without": ("fsh", {}), "with": ("fsh", {})}
    before = {"without": _not_tracking, "with": _tracking}
    with common.postgres(args.pg_url) as pg_url, tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            rates, ratios = ingest.interleaved(
                contenders, backend, pg_url, tmp, bodies, args, before
            )
            _tracking()
            ratio = common.median(ratios)
            low, high = common.median_interval(ratios)
            print(
                f"{backend:<10} tracking {rates['with']:7.0f}/s   without {rates['without']:7.0f}/s"
                f"   time ratio {ratio:.3f}x (median of {len(ratios)} pairs, 95% interval"
                f" {low:.3f}-{high:.3f}; total rates {rates['without'] / rates['with']:.3f}x)"
                f"   {'PASS' if ratio <= 1.05 else 'MISS'} (target: at most 5% slower)",
                flush=True,
            )
    if args.quick:
        print("(--quick: a smoke run; the numbers mean nothing)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
