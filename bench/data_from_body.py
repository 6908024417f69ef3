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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flask_stripe_hooks import storage  # noqa: E402

import ingest  # noqa: E402

_READS_JSON = storage._reads_json


def _from_body() -> None:
    storage._reads_json = _READS_JSON  # type: ignore[attr-defined]


def _with_dumps() -> None:
    storage._reads_json = lambda dialect: False  # type: ignore[attr-defined]


def line(rates: dict[str, float], ratio: float, low: float, high: float) -> str:
    return (
        f"data from the body {rates['body']:7.0f}/s   json.dumps {rates['dumps']:7.0f}/s"
        f"   ratio {ratio:.3f}x, 95% interval {low:.3f}-{high:.3f}"
    )


def main() -> None:
    contenders = {"body": ("fsh", {}), "dumps": ("fsh", {})}
    before = {"body": _from_body, "dumps": _with_dumps}
    ingest.paired_main(__doc__, contenders, line, before=before, backends="postgresql,sqlite")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
