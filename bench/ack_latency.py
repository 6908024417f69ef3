"""Acknowledge latency: queue mode vs in-request mode, with a 100 ms handler.

    python bench/ack_latency.py [--requests-per-client 50] [--clients 16] [--workers 4]

Starts a throwaway PostgreSQL (tests/support/pgserver.py) and redis-server, then for each mode runs
gunicorn (sync workers) serving ``tests/support/queue_app.py`` with every handler sleeping 100 ms,
and ``--clients`` threads that each post signed deliveries one after another. The latency
is the time from sending a delivery to reading its response: what Stripe waits for.

- in-request: the handler runs before the response (200 after ~100 ms of work).
- queue: the delivery is stored as pending, handed to Celery (Redis), answered 200; a
  Celery worker (prefork, 4 processes) runs the handlers meanwhile (``--worker during``,
  the default) or only once the load is over (``--worker after``: a burst).

Prints p50/p99/max latency and throughput per mode, and for queue mode how long the worker
took to drain the queue.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
sys.path.insert(0, str(TESTS))

from common import postgres  # noqa: E402

SECRET = "whsec_" + "b" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        args, cwd=TESTS, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def prepare(database_url: str, marks: str) -> str:
    """Fresh tables and one endpoint; returns its webhook path."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    os.environ.update(DATABASE_URL=database_url, MARKS=marks)
    os.environ.pop("REDIS_URL", None)
    from flask_stripe_hooks.testing import create_endpoint, webhook_path

    from support import queue_app

    app = queue_app.create_app()
    with app.app_context():
        queue_app.db.create_all()
        endpoint = create_endpoint(queue_app.db, secret=SECRET)
        path = webhook_path(app, endpoint.uuid)
        queue_app.db.engine.dispose()
    return path


def count_pending(database_url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        n = conn.execute(
            sa.text("SELECT count(*) FROM stripe_hooks_event WHERE status <> 'processed'")
        ).scalar()
    engine.dispose()
    return int(n or 0)


def load(port: int, path: str, clients: int, per_client: int) -> tuple[list[float], float, dict]:
    from flask_stripe_hooks.testing import build_event, sign_payload

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client() -> None:
        bodies = [json.dumps(build_event("invoice.paid")) for _ in range(per_client)]
        barrier.wait()
        for body in bodies:
            _, header = sign_payload(body, SECRET)
            started = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request(
                "POST",
                path,
                body=body.encode(),
                headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            response.read()
            conn.close()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[response.status] = statuses.get(response.status, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - started, statuses


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run_mode(
    mode: str, database_url: str, redis_url: str, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    marks = tmp / f"marks-{mode}"
    marks.mkdir()
    path = prepare(database_url, str(marks))
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        MARKS=str(marks),
        HANDLER_SLEEP_MS="100",
        PYTHONPATH=str(TESTS),
    )
    procs = []

    def start_worker() -> None:
        worker = start(
            [sys.executable, "-m", "celery", "-A", "support.queue_worker:celery_app", "worker"]
            + ["--pool", "prefork", "--concurrency", "4", "--loglevel", "WARNING"]
            + ["--without-gossip", "--without-mingle", "--without-heartbeat"],
            env,
            tmp / f"celery-{mode}.log",
        )
        procs.append(worker)

    if mode == "queue":
        env["REDIS_URL"] = redis_url
        if args.worker == "during":
            start_worker()
    port = free_port()
    server = start(
        [sys.executable, "-m", "gunicorn", "--workers", str(args.workers)]
        + ["--bind", f"127.0.0.1:{port}", "--backlog", "2048", "support.queue_app:create_app()"],
        env,
        tmp / f"gunicorn-{mode}.log",
    )
    procs.append(server)
    try:
        wait_port(port)
        load(port, path, args.clients, 2)  # warm up every worker and connection pool
        latencies, seconds, statuses = load(port, path, args.clients, args.requests_per_client)
        drained = None
        if mode == "queue":
            if args.worker == "after":
                start_worker()
            began = time.perf_counter()
            while count_pending(database_url) and time.perf_counter() - began < 300:
                time.sleep(0.2)
            drained = time.perf_counter() - began + seconds
    finally:
        for proc in procs:
            stop(proc)
    return {
        "mode": mode,
        "requests": len(latencies),
        "statuses": statuses,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
        "acks_per_s": len(latencies) / seconds,
        "all_processed_after_s": drained,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests-per-client", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--worker",
        choices=["during", "after"],
        default="during",
        help="queue mode: the Celery worker runs handlers during the load (default), or only"
        " starts after it (the acknowledge path alone, as in a burst)",
    )
    args = parser.parse_args()

    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        sys.exit("needs a Redis server: apt-get install redis-server")
    tmp = Path(tempfile.mkdtemp(prefix="ack-latency-"))
    redis_port = free_port()
    redis_proc = subprocess.Popen(
        [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
    )
    try:
        with postgres() as database_url:
            wait_port(redis_port)
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            results = [
                run_mode(m, database_url, redis_url, args, tmp) for m in ("in-request", "queue")
            ]
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\nacknowledge latency, 100 ms handler, {args.clients} concurrent clients,"
        f" gunicorn --workers {args.workers} (sync), PostgreSQL, {os.cpu_count()} CPUs,"
        f" Celery worker {args.worker} the load\n"
    )
    print(f"{'mode':<11} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'acks/s':>8}")
    for r in results:
        print(
            f"{r['mode']:<11} {r['requests']:>8} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}"
            f" {r['max_ms']:>8.1f} {r['acks_per_s']:>8.1f}"
        )
        if r["all_processed_after_s"] is not None:
            print(f"{'':<11} every handler done {r['all_processed_after_s']:.1f} s after the start")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
