"""The admin pages, the CLI listing, prune and ingest with a long history.

    python bench/history.py [--pg-sizes 1000,100000,1000000] [--sqlite-sizes 1000,1000000]
                            [--ingest-history 1000000] [--step 3] [--pg-url URL] [--quick]

1. Pages: for each size, a fresh database holds that many events and one delivery each,
   made with SQL (``tests/support/history_support.py``: ``INSERT ... SELECT`` over
   ``generate_series`` on PostgreSQL, a recursive CTE on SQLite), received at a steady
   rate of one every ``--step`` seconds (3 by default: close to a million a month, so the
   last 24 hours hold the same 28,800 rows at every size past that; with ``--step 1``,
   86,400), then ``VACUUM ANALYZE``. Each page is requested
   ``--repeat`` times (9) with the in-process test client (the admin allowed), after one
   untimed request, the sizes taking turns request by request; the median is printed, and the
   growth factor from the smallest size to the largest.
   Every event is about one of 10 objects (``sub_0`` to ``sub_9``): an object's history
   (``?object=sub_7``) holds 100 events at 1,000 and 100,000 at 1,000,000, a full first page
   at every size.
2. Prune at the largest PostgreSQL size: ``prune --dry-run`` (a capped count), then a prune
   of about a tenth of the rows in batches of 2,000 (rows per second, and the longest batch:
   the longest any lock is held), then clearing bodies of another tenth.
3. Ingest with a long history: ``ingest.interleaved`` on PostgreSQL, an empty database
   against one holding ``--ingest-history`` events, deliveries in alternating blocks.
4. Draining: ``--drain`` pending events (among the history) handed to Celery with
   ``process-pending --older-than 0 --enqueue``, drained by a worker of concurrency 1, 2
   and 4 (Redis broker, PostgreSQL, ``tests/support/queue_app.py``'s handler, which writes one row
   per event); the time until none is pending, and a check that every event ran once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa  # noqa: E402
from flask import Flask  # noqa: E402
from flask_sqlalchemy import SQLAlchemy  # noqa: E402
from flask_stripe_hooks import StripeHooks, retention  # noqa: E402
from flask_stripe_hooks.state import get_state  # noqa: E402
from flask_stripe_hooks.testing import create_endpoint  # noqa: E402
from flask_stripe_hooks.utils import utcnow  # noqa: E402

import common  # noqa: E402
from support.history_support import fill  # noqa: E402

ADMIN = "/admin"
#: One event every 3 s: close to a million a month (whole seconds suit SQLite's rows).
STEP = 3
#: The Stripe objects the events are about, each as busy as the others.
OBJECTS = 10
PAGES = {
    "endpoints list": "/",
    "events": "/events/",
    "events ?type=invoice": "/events/?type=invoice",
    "events ?status=failed": "/events/?status=failed",
    "events page 3": None,  # found by following "Older" twice
    "events ?object=sub_7": "/events/?object=sub_7",  # 1 in 10 events: 100,000 at 1M
    "deliveries": "/deliveries/",
    "deliveries ?outcome=failed": "/deliveries/?outcome=failed",
    "one event": "/events/evt_h500",
    "health": "/health",
}


def build(url: str) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=url,
        STRIPE_HOOKS_ADMIN_URL_PREFIX=ADMIN,
        STRIPE_HOOKS_ADMIN_AUTH=lambda: True,
        SECRET_KEY="bench",
    )
    db = SQLAlchemy()
    db.init_app(app)
    StripeHooks(app)
    return app


def filled(url: str, size: int, accounts: int = 0, step: int = STEP) -> Flask:
    """An app on ``url`` whose tables hold ``size`` events and deliveries, one every ``step``
    seconds (with ``accounts``, spread over that many connected accounts, ``acct_h0``...)."""
    app = build(url)
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        db.create_all()
        endpoint = create_endpoint(db)
        newest = utcnow() - timedelta(seconds=30)
        with db.engine.begin() as conn:
            for first in range(1, size + 1, 500_000):  # bounded statements
                count = min(500_000, size - first + 1)
                fill(
                    conn,
                    count,
                    newest=newest,
                    endpoint_id=endpoint.id,
                    first=first,
                    step=step,
                    accounts=accounts,
                    objects=OBJECTS,
                )
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE" if url.startswith("postgresql") else "ANALYZE"))
    return app


def get(client: Any, path: str) -> Any:
    def run() -> None:
        response = client.get(path)
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code}")

    return run


def page_three(client: Any) -> str:
    import html
    import re

    path = ADMIN + "/events/"
    for _ in range(2):
        found = re.search(r'href="([^"]+)" rel="next">Older', client.get(path).text)
        if not found:
            raise SystemExit("the events list has no third page")
        path = html.unescape(found.group(1))
    return path


def runners(app: Flask) -> dict[str, Any]:
    """Each page of :data:`PAGES`, and the CLI listings, as a function that requests it."""
    client = app.test_client()
    out = {}
    for name, path in PAGES.items():
        out[name] = get(client, page_three(client) if path is None else ADMIN + path)
    runner = app.test_cli_runner()
    for name, args in (
        ("CLI events --limit 20", ["stripe-hooks", "events", "--limit", "20"]),
        ("CLI events --object sub_7", ["stripe-hooks", "events", "--object", "sub_7"]),
    ):
        out[name] = lambda args=args: runner.invoke(args=args)
    return out


def pages(apps: dict[int, Flask], repeat: int) -> dict[int, dict[str, float]]:
    """Median ms of ``repeat`` requests of each page, for each size: the sizes take turns
    (request by request, the order rotating), so a machine that slows down or speeds up
    meanwhile weighs on every size alike."""
    made = {size: runners(app) for size, app in apps.items()}
    times: dict[int, dict[str, list[float]]] = {size: {} for size in apps}
    sizes = list(apps)
    for name in made[sizes[0]]:
        for size in sizes:
            made[size][name]()  # warm
        for turn in range(repeat):
            for size in sizes[turn % len(sizes) :] + sizes[: turn % len(sizes)]:
                start = time.perf_counter()
                made[size][name]()
                times[size].setdefault(name, []).append((time.perf_counter() - start) * 1000)
    return {
        size: {name: statistics.median(runs) for name, runs in found.items()}
        for size, found in times.items()
    }


def table(backend: str, results: dict[int, dict[str, float]], repeat: int) -> None:
    sizes = sorted(results)
    head = "".join(f"{size:>12,}" for size in sizes)
    print(f"\n{backend}: median ms of {repeat} requests, the sizes taking turns")
    print(f"{'page':<30}{head}{'growth':>9}")
    for name in results[sizes[0]]:
        row = "".join(f"{results[size][name]:12.1f}" for size in sizes)
        growth = results[sizes[-1]][name] / results[sizes[0]][name]
        print(f"{name:<30}{row}{growth:8.1f}x")


def prune_figures(app: Flask, size: int, step: int = STEP) -> None:
    with app.app_context():
        state = get_state()
        span = timedelta(seconds=size * step)
        options = {"older_than": span * 0.9, "bodies_older_than": None}
        start = time.perf_counter()
        dry = retention.prune(state, **options, dry_run=True)
        dry_ms = (time.perf_counter() - start) * 1000
        print(f"\nprune --dry-run (capped count): {dry_ms:.0f} ms → {dry}")
        batches: list[float] = []
        last = time.perf_counter()

        def tick(n: int) -> None:
            nonlocal last
            now = time.perf_counter()
            batches.append(now - last)
            last = now

        start = last = time.perf_counter()
        done = retention.prune(state, **options, progress=tick)
        took = time.perf_counter() - start
        rows = done["deliveries"] + done["events"]
        print(
            f"prune of the oldest tenth: {done} in {took:.1f} s, {rows / took:,.0f} rows/s,"
            f" {len(batches)} batches, longest {max(batches) * 1000:.0f} ms"
        )
        options = {"older_than": span * 0.9, "bodies_older_than": span * 0.8}
        start = time.perf_counter()
        cleared = retention.prune(state, **options)
        took = time.perf_counter() - start
        print(f"clearing the next tenth's bodies: {cleared['bodies']:,} in {took:.1f} s")


def ingest_figures(pg_url: str, tmp: str, history: int, quick: bool) -> None:
    import ingest
    import payloads

    args = argparse.Namespace(warmup=50, pairs=10 if quick else 60)
    per_run = 300 if quick else 3000
    bodies = payloads.bodies(per_run + args.warmup)
    done = []

    def fill_once() -> None:
        if done:
            return
        done.append(True)
        engine = sa.create_engine(pg_url.rpartition("/")[0] + "/ingest_history_postgresql")
        with engine.begin() as conn:
            endpoint_id = conn.execute(sa.text("SELECT min(id) FROM stripe_hooks_endpoint"))
            newest = utcnow() - timedelta(minutes=5)
            fill(conn, history, newest=newest, endpoint_id=endpoint_id.scalar(), step=STEP)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
        engine.dispose()

    contenders = {"empty": ("fsh", {}), "history": ("fsh", {})}
    rates, ratios = ingest.interleaved(
        contenders, "postgresql", pg_url, tmp, bodies, args, before={"history": fill_once}
    )
    low, high = common.median_interval(ratios)
    print(
        f"\ningest on PostgreSQL: empty {rates['empty']:.0f}/s, with {history:,} events"
        f" {rates['history']:.0f}/s; time ratio history/empty {common.median(ratios):.3f}"
        f" (median of {len(ratios)} pairs, 95% interval {low:.3f}–{high:.3f})"
    )


def drain_figures(pg_url: str, tmp: str, count: int) -> None:
    import shutil
    import subprocess

    from support.queue_support import app_env, free_port, port_open, start_worker, wait_until

    port = free_port()
    redis = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port)]
        + ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: port_open(port), 20, "redis-server")
        url = common.create_database(pg_url, "drain")
        env = app_env(url, Path(tmp), REDIS_URL=f"redis://127.0.0.1:{port}")
        os.environ.update(DATABASE_URL=url, MARKS=tmp, REDIS_URL=env["REDIS_URL"])
        from support import queue_app

        app = queue_app.create_app()
        db = app.extensions["sqlalchemy"]
        with app.app_context():
            db.create_all()
            endpoint = create_endpoint(db)
            with db.engine.begin() as conn:
                newest = utcnow() - timedelta(hours=1)
                fill(conn, count * 10, newest=newest, endpoint_id=endpoint.id, step=STEP)
                pending_rows = {"status": "pending", "prefix": "evt_p"}
                fill(conn, count, newest=newest, endpoint_id=endpoint.id, **pending_rows)
        print(f"\ndraining {count:,} pending events among {count * 10:,} (Celery, Redis)")
        events, handled = sa.table("stripe_hooks_event", sa.column("status")), queue_app.handled
        pending = sa.select(sa.func.count()).select_from(events).where(events.c.status == "pending")
        runs = sa.select(sa.func.count(), sa.func.count(handled.c.event_id.distinct()))
        enqueue = ["stripe-hooks", "process-pending", "--older-than", "0", "--enqueue"]
        for workers in (1, 2, 4):
            with app.app_context(), db.engine.begin() as conn:
                conn.execute(handled.delete())
                again = sa.text(
                    "UPDATE stripe_hooks_event SET status = 'pending' WHERE id LIKE 'evt_p%'"
                )
                conn.execute(again)
            worker = start_worker(env, Path(tmp) / f"worker{workers}.log", concurrency=workers)
            try:
                start = time.perf_counter()
                app.test_cli_runner().invoke(args=enqueue)
                queued = time.perf_counter() - start
                with app.app_context(), db.engine.connect() as conn:
                    wait_until(lambda c=conn: c.execute(pending).scalar() == 0, 600, "the drain")
                    took = time.perf_counter() - start
                    ran = tuple(conn.execute(runs).one())
            finally:
                worker.stop()
            verdict = "each once" if ran == (count, count) else f"WRONG {ran}"
            print(
                f"  concurrency {workers}: {count / took:7.0f} events/s (queued in {queued:.1f} s,"
                f" drained in {took:.1f} s), handler runs: {verdict}"
            )
    finally:
        redis.terminate()
        redis.wait(10)


def sizes(text: str) -> list[int]:
    """``--pg-sizes`` and ``--sqlite-sizes``: ``"1000,20000"``; ``""`` for none."""
    return [int(size) for size in text.split(",") if size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg-sizes", default="1000,100000,1000000")
    parser.add_argument("--sqlite-sizes", default="1000,1000000")
    parser.add_argument("--ingest-history", type=int, default=1_000_000)
    parser.add_argument("--drain", type=int, default=2000, help="pending events to drain")
    parser.add_argument("--step", type=int, default=STEP, help="seconds between two events")
    parser.add_argument("--repeat", type=int, default=9, help="timed requests of each page")
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--skip-prune", action="store_true")
    parser.add_argument("--pg-url", help="an existing PostgreSQL server (default: start one)")
    parser.add_argument("--quick", action="store_true", help="a smoke run; numbers mean nothing")
    args = parser.parse_args()
    if args.quick:
        args.pg_sizes, args.sqlite_sizes, args.ingest_history = "1000,20000", "1000,20000", 20000
        args.drain = 200
    print(common.machine())
    with common.postgres(args.pg_url) as pg_url, tempfile.TemporaryDirectory() as tmp:
        if args.drain:
            drain_figures(pg_url, tmp, args.drain)
        if args.skip_pages:
            return
        sqlite = {
            size: filled(f"sqlite:///{Path(tmp) / f'history{size}.db'}", size, step=args.step)
            for size in sizes(args.sqlite_sizes)
        }
        if sqlite:
            table("SQLite", pages(sqlite, args.repeat), args.repeat)
        for size in sqlite:
            os.unlink(Path(tmp) / f"history{size}.db")
        postgres = {
            size: filled(common.create_database(pg_url, f"history{size}"), size, step=args.step)
            for size in sizes(args.pg_sizes)
        }
        if postgres:
            table("PostgreSQL", pages(postgres, args.repeat), args.repeat)
            if not args.skip_prune:
                largest = max(postgres)
                prune_figures(postgres[largest], largest, args.step)
        if args.ingest_history:
            ingest_figures(pg_url, tmp, args.ingest_history, args.quick)


if __name__ == "__main__":
    main()
