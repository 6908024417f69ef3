"""What reading the event's ``data`` from the body in SQL is worth, against ``json.dumps``.

    python bench/data_from_body.py [--deliveries 4500] [--pairs 150] [--pg-url URL] [--quick]

The same flask-stripe-hooks app twice, each on a fresh database, delivered the same blocks
of signed events in pairs (as ``ingest.py`` does): one stores ``data`` as the database reads
it from the body (PostgreSQL, SQLite 3.38+), the other has Python serialise it with
``json.dumps``. The ratio printed is (time reading from the body) / (time with json.dumps),
the median over the pairs, with a 95% bootstrap interval: below 1.0 the body path is faster.
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


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    ingest.switch(__doc__, ("data-from-body", _from_body), ("json.dumps", _with_dumps))
