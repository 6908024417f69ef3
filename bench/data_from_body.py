"""What reading the event's ``data`` from the body in SQL is worth, against ``json.dumps``.

    python bench/data_from_body.py [--deliveries 4500] [--pairs 150] [--pg-url URL] [--quick]

The same flask-stripe-hooks app twice, each on a fresh database, delivered the same blocks
of signed events in pairs (as ``ingest.py`` does): one stores ``data`` as the database reads
it from the body (PostgreSQL, SQLite 3.38+), the other has Python serialise it with
``json.dumps``. The ratio printed is the median over the pairs of (time with json.dumps) /
(time reading from the body), with a 95% bootstrap interval: above 1.0 the body path is
faster.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flask_stripe_hooks import storage  # noqa: E402

import common  # noqa: E402
import ingest  # noqa: E402
import payloads  # noqa: E402

_READS_JSON = storage._reads_json


def _from_body() -> None:
    storage._reads_json = _READS_JSON  # type: ignore[attr-defined]


def _with_dumps() -> None:
    storage._reads_json = lambda dialect: False  # type: ignore[attr-defined]


def main() -> None:
    parser = ingest.run_arguments(__doc__)
    parser.add_argument("--backends", default="postgresql,sqlite")
    args = ingest.quick(parser.parse_args())
    print(f"machine: {common.machine()}")
    bodies = payloads.bodies(args.deliveries + args.warmup)
    print(f"payloads: {payloads.describe(bodies)}")
    contenders = {"body": ("fsh", {}), "dumps": ("fsh", {})}
    before = {"body": _from_body, "dumps": _with_dumps}
    with common.postgres(args.pg_url) as pg_url, tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            rates, ratios = ingest.interleaved(
                contenders, backend, pg_url, tmp, bodies, args, before
            )
            _from_body()
            ratio = common.median(ratios)
            low, high = common.median_interval(ratios)
            print(
                f"{backend:<10} data from the body {rates['body']:7.0f}/s   json.dumps"
                f" {rates['dumps']:7.0f}/s   ratio {ratio:.3f}x (median of {len(ratios)} pairs,"
                f" 95% interval {low:.3f}-{high:.3f})",
                flush=True,
            )
    if args.quick:
        print("(--quick: a smoke run; the numbers mean nothing)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
