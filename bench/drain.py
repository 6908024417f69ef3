"""Queue mode at volume: how fast it acknowledges and drains, against in-request processing.

    python bench/drain.py [--events 1500] [--rounds 3] [--block 50] [--type customer.updated]
                          [--no-previous] [--pg-url URL] [--quick]

On PostgreSQL (a throwaway server, ``tests/support/pgserver.py``) with a real ``redis-server``, the
benchmark's flask-stripe-hooks app (``flask_systems.create_fsh``: one handler that writes one
row) is built three ways, each on a fresh database of its own, side by side in this process,
and fed signed deliveries with the Flask test client:

- ``in-request``: the handlers run in the request;
- ``acknowledge``: queue mode with the Celery integration: store the event as pending, hand
  its id to the publisher, answer. The time includes sending every message (``flush`` at the
  end of each block): the publisher's thread runs in this process;
- ``previous``: queue mode as it was before batches, one ``process_event`` message per event
  sent inside the request (``--no-previous`` leaves it out).

Each round sends ``--events`` deliveries to each app in blocks of ``--block`` that take turns,
the order rotating, so the machine's drift falls on all alike. A ratio is the median over the
blocks of (in-request block time / the other's block time): the other's rate as a multiple of
in-request's.

Then a Celery worker (prefork, ``--concurrency`` 1, 2 or 4: the rounds cycle through them)
drains that round's acknowledged events from Redis; its rate runs from the first event's
``processed_at`` to the last one's, against the same round's in-request rate, and is given
again from the event after the worker's first ``--warmup`` (the new worker warmed up, as the
apps are before their timed deliveries). The
``previous`` app's events are drained the same way. Each drain checks that every event's
handler ran exactly once, and the machine's load is printed with each round.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402

import common  # noqa: E402
import drain_worker  # noqa: E402
import flask_systems  # noqa: E402
import payloads  # noqa: E402
from ingest import deliver_all  # noqa: E402
from support.queue_support import Process, free_port, port_open, start_worker, wait_until  # noqa: E402

PATH = flask_systems.PATHS["fsh"]
CONCURRENCY = (1, 2, 4)


def bodies(count: int, event_type: str, seed: int) -> list[str]:
    """``count`` events of ``event_type`` (``mix``: the benchmark's realistic mix)."""
    if event_type == "mix":
        return payloads.bodies(count, seed=seed)
    rng = random.Random(seed)
    now = int(time.time())
    return [
        payloads.event_body(rng, event_type, f"evt_drain{seed:03d}{i:012d}", now)
        for i in range(count)
    ]


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


class Contender:
    """One app on its own database; ``flush`` (queue mode) waits until its messages are sent."""

    def __init__(self, label: str, app: Any, db_url: str, redis_url: str | None) -> None:
        self.label, self.app, self.db_url, self.redis_url = label, app, db_url, redis_url
        self.db = app.extensions["sqlalchemy"]

    def run(self, block: list[tuple[bytes, str]]) -> float:
        took = deliver_all(self.app, PATH, block)
        if self.redis_url is not None and self.label == "acknowledge":
            from flask_stripe_hooks.celery import flush

            start = time.perf_counter()
            with self.app.app_context():
                if not flush(60):
                    raise SystemExit("the publisher did not send its messages within 60 s")
            took += time.perf_counter() - start
        return took

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.app.app_context():
            value = self.db.session.execute(sa.text(sql), params).scalar()
            self.db.session.remove()
        return value


def build(pg_url: str, redis_base: str) -> dict[str, Contender]:
    contenders = {}
    for index, label in enumerate(("in-request", "acknowledge", "previous")):
        url = common.create_database(pg_url, f"drain_{label.replace('-', '_')}")
        redis_url = None if label == "in-request" else f"{redis_base}/{index}"
        if redis_url is None:
            app = flask_systems.create_fsh(url)
        elif label == "acknowledge":
            app = drain_worker.create_queued(url, redis_url)
        else:
            app = drain_worker.create_queued(url, redis_url, callback=drain_worker.send_each)
        flask_systems.seed_fsh(app)
        contenders[label] = Contender(label, app, url, redis_url)
    return contenders


def drain(
    contender: Contender, since: datetime, expected: int, concurrency: int, warm: int, tmp: str
) -> tuple[float, float, int]:
    """Start a worker of ``concurrency`` processes on the contender's queue and wait until the
    events received since ``since`` are processed; ``(rate from the first processed_at to the
    last, the same from the event after the first ``warm`` (the worker warmed up, as the apps
    are before their timed deliveries), batches run)``. Exits when a handler ran other than
    once."""
    assert contender.redis_url is not None
    bench = str(Path(__file__).resolve().parent)
    env = dict(os.environ)
    env.update(
        DATABASE_URL=contender.db_url,
        REDIS_URL=contender.redis_url,
        MARKS=tmp,
        PYTHONPATH=os.pathsep.join([bench, str(common.ROOT / "tests"), str(common.ROOT)]),
    )
    log = Path(tmp) / f"worker-{contender.label}-{concurrency}-{time.monotonic_ns()}.log"
    worker: Process = start_worker(env, log, concurrency=concurrency, app="drain_worker:celery_app")
    pending = "SELECT count(*) FROM stripe_hooks_event WHERE status = 'pending'"
    try:
        wait_until(lambda: contender.scalar(pending) == 0, 600, f"{contender.label} drained")
    finally:
        worker.stop()
    with contender.app.app_context():
        times = sorted(
            contender.db.session.execute(
                sa.text("SELECT processed_at FROM stripe_hooks_event WHERE received_at >= :since"),
                {"since": since},
            ).scalars()
        )
        contender.db.session.remove()
    count = len(times)
    messages = len(re.findall(r"process_events\[[\w-]+\] succeeded", worker.output()))
    runs = contender.scalar("SELECT count(*) FROM handled")
    distinct = contender.scalar("SELECT count(DISTINCT event_id) FROM handled")
    events = contender.scalar("SELECT count(*) FROM stripe_hooks_event")
    if count != expected or runs != events or distinct != events:
        raise SystemExit(
            f"{contender.label}: {count} events this round (expected {expected}), {events}"
            f" stored, handler ran {runs} times for {distinct} events"
        )
    warm = min(warm, count - 2)
    return (
        (count - 1) / (times[-1] - times[0]).total_seconds(),
        (count - 1 - warm) / (times[-1] - times[warm]).total_seconds(),
        messages,
    )


def rounds(args: argparse.Namespace, contenders: dict[str, Contender], tmp: str) -> None:
    labels = [label for label in contenders if args.previous or label != "previous"]
    queued = [label for label in labels if label != "in-request"]
    warm = bodies(args.warmup, args.type, seed=999)
    for label in labels:  # untimed; then marked processed and their messages dropped
        contenders[label].run([(b.encode(), h) for b, h in payloads.signed(warm)])
    for label in queued:
        contender = contenders[label]
        with contender.app.app_context():
            contender.db.session.execute(
                sa.text("UPDATE stripe_hooks_event SET status = 'processed'")
            )
            contender.db.session.execute(
                sa.text(
                    "INSERT INTO handled (event_id, type) SELECT id, type FROM stripe_hooks_event"
                )
            )
            contender.db.session.commit()
        redis.Redis.from_url(contender.redis_url).flushdb()
    ratios: dict[str, list[float]] = {label: [] for label in queued}
    drains: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    for number in range(args.rounds):
        concurrency = args.concurrency[number % len(args.concurrency)]
        items = [
            (b.encode(), h) for b, h in payloads.signed(bodies(args.events, args.type, number))
        ]
        since = datetime.now(timezone.utc)
        seconds = dict.fromkeys(labels, 0.0)
        for i in range(0, len(items), args.block):
            block = items[i : i + args.block]
            order = (
                labels[i // args.block % len(labels) :] + labels[: i // args.block % len(labels)]
            )
            took = {label: contenders[label].run(block) for label in order}
            for label in labels:
                seconds[label] += took[label]
            for label in queued:
                ratios[label].append(took["in-request"] / took[label])
        rates = {label: len(items) / seconds[label] for label in labels}
        line = f"round {number + 1} ({load()}): " + ", ".join(
            f"{label} {rates[label]:.0f}/s" for label in labels
        )
        for label in queued:
            rate, warm, batches = drain(
                contenders[label], since, len(items), concurrency, args.warmup, tmp
            )
            drains.setdefault((label, concurrency), []).append(
                (rate, rate / rates["in-request"], warm / rates["in-request"])
            )
            line += f"; {label} drained by {concurrency} process(es) {rate:.0f}/s"
            line += f" (warm {warm:.0f}/s{f', {batches} batches' if batches else ''})"
        print(line, flush=True)
    print(f"\nsummary ({load()}; {common.machine()})")
    for label in queued:
        low, high = common.median_interval(ratios[label])
        print(
            f"  {label:<12} acknowledgement {common.median(ratios[label]):.3f}x in-request's rate"
            f" (median of {len(ratios[label])} paired blocks, 95% interval {low:.3f}-{high:.3f})"
        )
    for (label, concurrency), found in sorted(drains.items()):
        rate = common.median([r for r, _, _ in found])
        ratio = common.median([x for _, x, _ in found])
        warm = common.median([w for _, _, w in found])
        print(
            f"  {label:<12} drain, {concurrency} worker process(es): {rate:.0f}/s,"
            f" {ratio:.3f}x that round's in-request rate ({warm:.3f}x after the worker's first"
            f" {args.warmup} events; median of {len(found)} round(s))"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1500, help="deliveries per app per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--block", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--type", default="customer.updated", help="an event type, or 'mix'")
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(n) for n in text.split(",")],
        default=list(CONCURRENCY),
        help="worker processes of each round's drain, in turn (default 1,2,4)",
    )
    parser.add_argument("--no-previous", dest="previous", action="store_false")
    parser.add_argument("--pg-url", help="an existing PostgreSQL server (default: start one)")
    parser.add_argument("--quick", action="store_true", help="a smoke run; numbers mean nothing")
    args = parser.parse_args()
    if args.quick:
        args.events, args.rounds, args.block, args.warmup = 60, 3, 20, 5
    print(f"machine: {common.machine()}")
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: apt-get install redis-server")
    with common.postgres(args.pg_url) as pg_url, tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp]
            + ["--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: port_open(port), 20, "redis-server")
            rounds(args, build(pg_url, f"redis://127.0.0.1:{port}"), tmp)
        finally:
            server.terminate()
            server.wait(10)
    if args.quick:
        print("(--quick: a smoke run; the numbers mean nothing)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
