"""One connected account's events, with a long history: the admin's events list filtered by
account, its third page, the CLI's ``events --account``, and the accounts ``fetch-missed --all-
connected`` reads.

    python bench/connect.py [--pg-sizes 1000,100000,1000000] [--sqlite-sizes 1000,100000,1000000]
                            [--accounts 5] [--pg-url URL] [--quick]

For each size, a fresh database holds that many events and one delivery each, made with SQL
(``tests/support/history_support.py``, as ``bench/history.py`` makes them: one event every 3 s,
close to a million a month), spread over ``--accounts`` connected accounts, then ``ANALYZE``.
Each page is requested 5 times with the in-process test client (the admin allowed), after one
untimed request; the median is printed, and the growth factor from the smallest size to the
largest. With 5 accounts every page is full at every size (50 rows in the admin, 20 in the
CLI). The CLI's figure is split into its two queries: the page's rows, and the count of the
matching rows, which stops at 1,001 index entries (an account with 200 events at 1,000 reads
200; from 100,000 on, 1,001).

``--all-connected`` reads the accounts of the events received within ``--since`` (3 days:
86,400 rows at one every 3 s): its cost follows the window, not the history.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import sqlalchemy as sa  # noqa: E402
from flask import Flask  # noqa: E402
from flask_stripe_hooks import backfill, paging  # noqa: E402
from flask_stripe_hooks.models import event_table  # noqa: E402
from flask_stripe_hooks.state import get_state  # noqa: E402

import common  # noqa: E402
from history import ADMIN, filled, get, table, timed  # noqa: E402

ACCOUNT = "acct_h3"


def third_page(client: Any) -> str:
    path = f"{ADMIN}/events/?account={ACCOUNT}"
    for _ in range(2):
        found = re.search(r'href="([^"]+)" rel="next">Older', client.get(path).text)
        if not found:
            raise SystemExit("the account's events have no third page")
        path = html.unescape(found.group(1))
    return path


def pages(app: Flask) -> dict[str, float]:
    client = app.test_client()
    runner = app.test_cli_runner()
    out = {
        "admin ?account=": timed(get(client, f"{ADMIN}/events/?account={ACCOUNT}")),
        "admin ?account= page 3": timed(get(client, third_page(client))),
    }

    def cli() -> None:
        result = runner.invoke(args=["stripe-hooks", "events", "--account", ACCOUNT])
        if result.exit_code != 0 or ACCOUNT not in result.output:
            raise SystemExit(result.output)

    out["CLI events --account"] = timed(cli)
    query = sa.select(event_table).where(event_table.c.account == ACCOUNT)

    def rows() -> None:
        with app.app_context():
            order = (event_table.c.received_at.desc(), event_table.c.id.desc())
            get_state().db.session.execute(query.order_by(*order).limit(21)).all()

    def count() -> None:
        with app.app_context():
            paging.capped_count(get_state().db.session, query, event_table.c.id)

    out["  its 21 rows"] = timed(rows)
    out["  its count (<= 1,001)"] = timed(count)

    def accounts() -> None:
        with app.app_context():
            if not backfill.connected_accounts(get_state(), since=timedelta(days=3)):
                raise SystemExit("no connected account seen")

    out["--all-connected accounts (3d)"] = timed(accounts)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg-sizes", default="1000,100000,1000000")
    parser.add_argument("--sqlite-sizes", default="1000,100000,1000000")
    parser.add_argument("--accounts", type=int, default=5)
    parser.add_argument("--pg-url", help="an existing PostgreSQL server (default: start one)")
    parser.add_argument("--quick", action="store_true", help="a smoke run; numbers mean nothing")
    args = parser.parse_args()
    if args.quick:
        args.pg_sizes = args.sqlite_sizes = "1000,20000"
    sizes = {
        "SQLite": [int(n) for n in args.sqlite_sizes.split(",") if n],
        "PostgreSQL": [int(n) for n in args.pg_sizes.split(",") if n],
    }
    print(common.machine())
    with common.postgres(args.pg_url) as pg_url, tempfile.TemporaryDirectory() as tmp:
        sqlite = {}
        for size in sizes["SQLite"]:
            path = Path(tmp) / f"connect{size}.db"
            sqlite[size] = pages(filled(f"sqlite:///{path}", size, args.accounts))
            os.unlink(path)
        if sqlite:
            table("SQLite", sqlite)
        postgres = {}
        for size in sizes["PostgreSQL"]:
            url = common.create_database(pg_url, f"connect{size}")
            postgres[size] = pages(filled(url, size, args.accounts))
        if postgres:
            table("PostgreSQL", postgres)


if __name__ == "__main__":
    main()
