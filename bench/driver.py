"""Runs one system inside its own virtualenv; ``run.py`` starts it as a subprocess.

    driver.py setup   --system S --db URL              create the schema, seed the endpoint
    driver.py inproc  --system S --db URL --payloads F  deliver every payload in-process
    driver.py profile --system S --db URL --payloads F  statements and transactions per delivery
    driver.py counts  --system S --db URL              rows stored (events, handler rows)

``inproc`` calls the system's WSGI application directly with a prepared environ (the same
for every system, no socket, no test-client bookkeeping) and prints one JSON line: rate,
latency percentiles, the process's peak RSS, response statuses and the rows stored.

Systems: ``fsh``, ``minimal``, ``handwritten`` (Flask, see ``flask_systems.py``) and
``djstripe`` (dj-stripe 2.11 on Django, see ``djstripe_peer/``).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import payloads  # noqa: E402

DJSTRIPE_PATH = f"/stripe/webhook/{payloads.ENDPOINT_UUID}/"


# -- building the WSGI app of a system ---------------------------------------------------


def _django_setup(db_url: str) -> None:
    os.environ["BENCH_DB"] = db_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djstripe_peer.settings")
    import django

    django.setup()
    import stripe

    # Any call to Stripe's API would fail loudly: nothing listens on port 9.
    stripe.api_base = "http://127.0.0.1:9"


def build(system: str, db_url: str) -> tuple[Any, str]:
    """``(wsgi_app, path)`` for ``system``."""
    if system == "djstripe":
        _django_setup(db_url)
        from django.core.wsgi import get_wsgi_application

        return get_wsgi_application(), DJSTRIPE_PATH
    import flask_systems

    return flask_systems.FACTORIES[system](db_url), flask_systems.PATHS[system]


def setup(system: str, db_url: str) -> None:
    if system == "djstripe":
        _django_setup(db_url)
        from django.core.management import call_command

        call_command("migrate", run_syncdb=True, verbosity=0)
        _seed_djstripe()
        return
    import flask_systems

    app = flask_systems.FACTORIES[system](db_url)
    flask_systems.SEEDS[system](app)
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def _seed_djstripe() -> None:
    """The rows dj-stripe would otherwise fetch from Stripe: the account, the API key that
    points at it, and the webhook endpoint with its secret."""
    from djstripe.models import Account, APIKey, WebhookEndpoint

    account = Account.objects.create(
        id="acct_benchmark", livemode=False, stripe_data={"id": "acct_benchmark"}
    )
    APIKey.objects.create(
        secret=payloads.API_KEY, type="secret", livemode=False, djstripe_owner_account=account
    )
    WebhookEndpoint.objects.create(
        id="we_benchmark",
        livemode=False,
        djstripe_owner_account=account,
        djstripe_uuid=payloads.ENDPOINT_UUID,
        secret=payloads.SECRET,
        url=f"https://example.com/stripe/webhook/{payloads.ENDPOINT_UUID}/",
        enabled_events=["*"],
        status="enabled",
        api_version=payloads.API_VERSION,
        stripe_data={"id": "we_benchmark"},
    )


def counts(system: str, app: Any) -> dict[str, int]:
    if system == "djstripe":
        from django.db import connection
        from djstripe.models import Event

        from djstripe_peer.benchapp.models import Handled

        out = {
            "events": Event.objects.count(),
            "handled": Handled.objects.count(),
            "handled_distinct": Handled.objects.values("event_id").distinct().count(),
        }
        connection.close()
        return out
    import flask_systems

    return flask_systems.counts(app, system)


# -- calling it --------------------------------------------------------------------------


class Caller:
    """POSTs a signed delivery to a WSGI app in this process, as a server would."""

    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.base = {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "localhost",
            "HTTP_USER_AGENT": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "HTTP_ACCEPT": "*/*; q=0.5, application/xml",
            "HTTP_CACHE_CONTROL": "no-cache",
            "CONTENT_TYPE": "application/json; charset=utf-8",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        self.status = ""

    def _start_response(self, status: str, headers: Any, exc_info: Any = None) -> Any:
        self.status = status
        return lambda data: None

    def __call__(self, body: bytes, header: str) -> int:
        environ = dict(self.base)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["HTTP_STRIPE_SIGNATURE"] = header
        environ["wsgi.input"] = io.BytesIO(body)
        result = self.app(environ, self._start_response)
        try:
            for _ in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return int(self.status[:3])


def peak_rss_mb() -> float:
    """This process's peak resident memory. ``VmHWM`` starts afresh at exec, where
    ``ru_maxrss`` would start from the parent's (run.py's) size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def inproc(system: str, db_url: str, payload_file: str, warmup: int) -> dict[str, Any]:
    items = payloads.read(payload_file)
    app, path = build(system, db_url)
    call = Caller(app, path)
    statuses: Counter[int] = Counter()
    for body, header in items[:warmup]:
        statuses[call(body, header)] += 1
    timed = items[warmup:]
    latencies = []
    gc.collect()
    clock = time.perf_counter
    cpu_start = time.process_time()
    start = clock()
    for body, header in timed:
        t0 = clock()
        statuses[call(body, header)] += 1
        latencies.append(clock() - t0)
    elapsed = clock() - start
    cpu = time.process_time() - cpu_start
    latencies.sort()
    return {
        "system": system,
        "deliveries": len(timed),
        "seconds": elapsed,
        "rate": len(timed) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "cpu_ms": cpu / len(timed) * 1000,
        "peak_rss_mb": peak_rss_mb(),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "rows": counts(system, app),
    }


# -- profiling ---------------------------------------------------------------------------


def _count_statements(system: str, app: Any) -> Counter[str]:
    """Count SQL statements by their first word (SELECT, INSERT, UPDATE, COMMIT...)."""
    seen: Counter[str] = Counter()

    def note(sql: str) -> None:
        seen[sql.lstrip().split(None, 1)[0].upper()] += 1

    if system == "djstripe":
        from django.core.signals import request_started
        from django.db import connection, reset_queries

        request_started.disconnect(reset_queries)  # keep the log across requests
        connection.force_debug_cursor = True  # Django logs every statement it runs
        connection.queries_log.clear()
        seen["_django"] = 0
    else:
        import sqlalchemy as sa

        with app.app_context():
            engine = app.extensions["sqlalchemy"].engine
        sa.event.listen(engine, "before_cursor_execute", lambda c, cur, sql, *a: note(sql))
        sa.event.listen(engine, "commit", lambda conn: note("COMMIT"))
    return seen


def _xact_commits(db_url: str) -> int | None:
    """Committed transactions of the database so far (PostgreSQL's own count)."""
    if not db_url.startswith("postgresql"):
        return None
    import psycopg

    dsn = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        return int(row[0]) if row else None


def _close_connections(system: str, app: Any) -> None:
    """Close the app's connections: a backend that exits flushes its statistics."""
    if system == "djstripe":
        from django.db import connection

        connection.close()
    else:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()
    time.sleep(0.5)


def profile(system: str, db_url: str, payload_file: str, warmup: int) -> dict[str, Any]:
    items = payloads.read(payload_file)
    app, path = build(system, db_url)
    call = Caller(app, path)
    for body, header in items[:warmup]:
        call(body, header)
    _close_connections(system, app)
    timed = items[warmup:]
    if not timed:
        raise SystemExit("no deliveries left to profile after the warm-up")
    before = _xact_commits(db_url)
    seen = _count_statements(system, app)
    profiler = cProfile.Profile()
    profiler.enable()
    for body, header in timed:
        call(body, header)
    profiler.disable()
    if system == "djstripe":
        from django.db import connection

        del seen["_django"]
        for query in connection.queries_log:
            seen[query["sql"].lstrip().split(None, 1)[0].upper()] += 1
        connection.force_debug_cursor = False
    seen_total = dict(seen)
    _close_connections(system, app)
    after = _xact_commits(db_url)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(25)
    n = len(timed)
    return {
        "system": system,
        "deliveries": n,
        "statements_per_delivery": {k: v / n for k, v in sorted(seen_total.items())},
        "transactions_per_delivery": None
        if before is None or after is None
        else (after - before - 1) / n,
        "profile": out.getvalue(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["setup", "inproc", "profile", "counts"])
    parser.add_argument("--system", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--payloads")
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    if args.command == "setup":
        setup(args.system, args.db)
        return
    if args.command == "counts":
        print(json.dumps(counts(args.system, build(args.system, args.db)[0])))
        return
    run = inproc if args.command == "inproc" else profile
    print(json.dumps(run(args.system, args.db, args.payloads, args.warmup)))


if __name__ == "__main__":
    main()
