"""Queue mode with real parts: a Redis server, Celery worker processes, PostgreSQL and SQLite.

The worker runs ``tests/support/queue_app.py`` (see its docstring for what the test handlers do).
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from flask_stripe_hooks import StripeHooks, on_commit, recovery, signals
from flask_stripe_hooks.celery import backoff, flush, process_event
from flask_stripe_hooks.extension import get_state
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery
from flask_stripe_hooks.pipeline.run import process_stored
from flask_stripe_hooks.testing import build_event, create_endpoint, deliver

from support import queue_app
from support.helpers import handled, on_postgresql, record, rows
from support.queue_support import (
    CutProxy,
    app_env,
    start_worker,
    wait_until,
)

ZERO = timedelta(0)
#: Only on PostgreSQL (row locks, a server to lose).


@pytest.fixture
def qapp(
    database_url: str, redis_url: str, marks: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Flask]:
    """``queue_app`` in this process, in queue mode: deliveries go to the real Redis."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MARKS", str(marks))
    monkeypatch.setenv("REDIS_URL", redis_url)
    app = queue_app.create_app()
    with app.app_context():
        queue_app.db.create_all()
    yield app
    app.extensions["celery"].close()
    with app.app_context():
        queue_app.db.engine.dispose()


@pytest.fixture
def qendpoint(qapp: Flask) -> Any:
    with qapp.app_context():
        return create_endpoint(queue_app.db)


def worker_env(database_url: str, marks: Path, redis_url: str, **extra: Any) -> dict[str, str]:
    return app_env(database_url, marks, REDIS_URL=redis_url, **extra)


def statuses(app: Flask) -> dict[str, tuple[str, int, str | None]]:
    return {e.id: (e.status, e.attempts, e.last_error) for e in rows(app, StripeEvent)}


def handled_ids(app: Flask) -> list[str]:
    return sorted(event_id for event_id, _ in handled(app))


def queue_length(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.llen("celery"))
    finally:
        client.close()


def queued(url: str) -> list[tuple[str, Any]]:
    """``(task name, first argument)`` of each message waiting in Redis, oldest first."""
    client = redis.Redis.from_url(url)
    try:
        messages = [json.loads(m) for m in reversed(client.lrange("celery", 0, -1))]
    finally:
        client.close()
    return [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0][0]) for m in messages]


def sent(app: Flask) -> None:
    """Wait until this process's publisher has sent what it was given."""
    with app.app_context():
        assert flush(10)


def event(**metadata: Any) -> dict[str, Any]:
    return build_event("customer.created", {"metadata": metadata})


def all_processed(app: Flask, ids: list[str]) -> bool:
    found = statuses(app)
    return all(found.get(i, ("",))[0] == "processed" for i in ids)


def test_worker_processes_queued_events(
    qapp: Flask,
    qendpoint: Any,
    database_url: str,
    redis_url: str,
    marks: Path,
    processes: list[Any],
    tmp_path: Path,
) -> None:
    client = qapp.test_client()
    plain = [event() for _ in range(3)]
    committed, flaky = event(on_commit=True), event(fail_once=True)
    items = [*plain, committed, flaky]
    for item in items:
        response = deliver(client, qendpoint, item)
        assert (response.status_code, response.text) == (200, "queued\n")
    ids = [e["id"] for e in items]
    # Acknowledged before any handler ran: stored as pending, and sent in batches.
    assert {i: s[0] for i, s in statuses(qapp).items()} == dict.fromkeys(ids, "pending")
    assert handled(qapp) == []
    sent(qapp)
    messages = queued(redis_url)
    assert {task for task, _ in messages} == {"flask_stripe_hooks.process_events"}
    assert [i for _, batch in messages for i in batch] == ids
    assert len(messages) < len(ids)  # the ids share messages

    env = worker_env(database_url, marks, redis_url, CELERY_BACKOFF=0.2)
    processes.append(start_worker(env, tmp_path / "worker.log"))
    wait_until(lambda: all_processed(qapp, ids), 60, "the worker to process every event")

    assert handled_ids(qapp) == sorted(ids)  # each handler effect exactly once
    assert {pid for _, pid in handled(qapp)} - {str(os.getpid())}  # in the worker process
    found = statuses(qapp)
    assert found[flaky["id"]] == ("processed", 2, None)  # failed once, retried by Celery
    assert all(found[i] == ("processed", 1, None) for i in ids if i != flaky["id"])
    # on_commit ran in the worker, after its commit.
    wait_until(lambda: (marks / "commits.log").exists(), 10, "the on-commit callback")
    (line,) = (marks / "commits.log").read_text().splitlines()
    event_id, pid = line.split()
    assert event_id == committed["id"] and pid != str(os.getpid())
    # The failed one went on as its own task, after a backoff.
    assert f"event {flaky['id']} not processed (handler failed); again in" in processes[0].output()
    assert re.search(r"process_event\[[\w-]+\] received", processes[0].output())

    # A redelivery of a processed event is a duplicate: no new message, no handler.
    response = deliver(client, qendpoint, plain[0])
    assert (response.status_code, response.text) == (200, "duplicate\n")
    sent(qapp)
    assert queue_length(redis_url) == 0
    assert handled_ids(qapp) == sorted(ids)


def test_redelivery_in_queue_mode(app_factory: Any, hooks: StripeHooks) -> None:
    """Pending or failed: handed to the queue again; processed: a duplicate. The worker's
    ``process_stored`` records attempts and errors and runs on_commit after its commit."""
    queued: list[str] = []
    app = app_factory(STRIPE_HOOKS_EVENT_CALLBACK=queued.append)
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        endpoint = create_endpoint(db)
    breaking, committed = [True], []

    @hooks.on("invoice.paid")
    def handler(event: Any, **kwargs: Any) -> None:
        record(app, event.id)
        on_commit(lambda: committed.append(event.id))
        if breaking[0]:
            raise RuntimeError("the mail server is down")

    client = app.test_client()
    item = build_event("invoice.paid")
    event_id = item["id"]
    for expected in ([event_id], [event_id] * 2):  # new, then redelivered while pending
        response = deliver(client, endpoint, item)
        assert (response.status_code, response.text) == (200, "queued\n")
        assert queued == expected
    assert [(e.status, e.attempts) for e in rows(app, StripeEvent)] == [("pending", 0)]

    with app.app_context():
        result = process_stored(get_state(), event_id)
    assert result.outcome == "failed"
    (stored,) = rows(app, StripeEvent)
    assert (stored.status, stored.attempts) == ("failed", 1)
    assert stored.last_error == "RuntimeError: the mail server is down"
    assert handled(app) == [] and committed == []  # rolled back, callback dropped

    assert deliver(client, endpoint, item).text == "queued\n"  # failed: queued again
    assert queued == [event_id] * 3
    breaking[0] = False
    with app.app_context():
        assert process_stored(get_state(), event_id).outcome == "processed"
        assert process_stored(get_state(), event_id).outcome == "duplicate"
    (stored,) = rows(app, StripeEvent)
    assert (stored.status, stored.attempts, stored.last_error) == ("processed", 2, None)
    assert handled(app) == [(event_id, "")] and committed == [event_id]

    assert deliver(client, endpoint, item).text == "duplicate\n"
    assert queued == [event_id] * 3
    outcomes = [d.outcome for d in rows(app, WebhookDelivery)]
    assert outcomes == ["queued", "queued", "queued", "duplicate"]


def test_callback_failure_leaves_the_event_pending(app_factory: Any) -> None:
    def broken(event_id: str) -> None:
        raise ConnectionError("broker unreachable")

    app = app_factory(STRIPE_HOOKS_EVENT_CALLBACK=broken)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    item = build_event("customer.created")
    response = deliver(app.test_client(), endpoint, item)
    # The event is durable; the sweeper picks it up. Stripe need not retry.
    assert (response.status_code, response.text) == (200, "queued\n")
    assert [e.status for e in rows(app, StripeEvent)] == ["pending"]


@on_postgresql
def test_locked_event_is_busy_not_missing(database_url: str, app_factory: Any) -> None:
    """Two workers never run one event at once: the second skips the locked row."""
    app = app_factory(STRIPE_HOOKS_EVENT_CALLBACK=lambda event_id: None)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    item = build_event("customer.created")
    deliver(app.test_client(), endpoint, item)
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as other:  # another worker, in the middle of this event
            other.execute(
                sa.text("SELECT id FROM stripe_hooks_event WHERE id = :id FOR UPDATE"),
                {"id": item["id"]},
            )
            with app.app_context():
                result = process_stored(get_state(), item["id"])
            assert result.outcome == "busy"
            other.rollback()
        with app.app_context():
            assert process_stored(get_state(), item["id"]).outcome == "processed"
            assert process_stored(get_state(), "evt_nope").outcome == "missing"
    finally:
        engine.dispose()


def test_worker_killed_mid_handler_is_retried_once(
    qapp: Flask,
    qendpoint: Any,
    database_url: str,
    redis_url: str,
    marks: Path,
    processes: list[Any],
    tmp_path: Path,
) -> None:
    """SIGKILL of the pool process running the handler: the transaction dies with it, the
    message goes back to the queue, and the retry processes the event exactly once."""
    item = event(hang_once=True)
    deliver(qapp.test_client(), qendpoint, item)
    worker = start_worker(worker_env(database_url, marks, redis_url), tmp_path / "worker.log")
    processes.append(worker)
    pid_file = marks / f"hang-{item['id']}.pid"
    wait_until(pid_file.exists, 60, "the handler to start")
    wait_until(pid_file.read_text, 5, "the pid")
    assert statuses(qapp)[item["id"]][0] == "pending"
    os.kill(int(pid_file.read_text()), signal.SIGKILL)

    wait_until(lambda: all_processed(qapp, [item["id"]]), 60, "the retry")
    assert handled_ids(qapp) == [item["id"]]
    assert statuses(qapp)[item["id"]] == ("processed", 1, None)  # the killed try never committed
    assert worker.alive()
    log = worker.output()
    assert "WorkerLostError" in log
    (task_id,) = set(re.findall(r"process_events\[([\w-]+)\] received", log))
    assert log.count(f"process_events[{task_id}] received") == 2  # back on the queue


def test_whole_worker_killed_sweeper_processes_once(
    qapp: Flask,
    qendpoint: Any,
    database_url: str,
    redis_url: str,
    marks: Path,
    processes: list[Any],
    tmp_path: Path,
) -> None:
    """The whole worker dies mid-handler (its message stays unacknowledged in Redis): the
    event stays pending; ``process-pending`` runs it once; when Redis hands the old message
    out again, the new worker finds it processed and does nothing."""
    item = event(hang_once=True)
    deliver(qapp.test_client(), qendpoint, item)
    env = worker_env(database_url, marks, redis_url, CELERY_VISIBILITY_TIMEOUT=3)
    worker = start_worker(env, tmp_path / "first.log", pool="solo")
    processes.append(worker)
    wait_until((marks / f"hang-{item['id']}.pid").exists, 60, "the handler to start")
    taken = time.monotonic()
    worker.kill()
    assert statuses(qapp)[item["id"]] == ("pending", 0, None)
    assert handled(qapp) == []

    runner = qapp.test_cli_runner()
    dry = runner.invoke(args=["stripe-hooks", "process-pending", "--older-than", "0", "--dry-run"])
    assert dry.exit_code == 0 and item["id"] in dry.output and "would process 1" in dry.output
    assert statuses(qapp)[item["id"]][0] == "pending"
    swept = runner.invoke(args=["stripe-hooks", "process-pending", "--older-than", "0"])
    assert swept.exit_code == 0, swept.output
    assert "process-pending: 1 processed" in swept.stdout
    assert handled_ids(qapp) == [item["id"]]

    # The message older than the visibility timeout (3 s) before the new worker looks: kombu
    # before 5.7 (what Python 3.10 gets) looks at start-up, then only every 100 s.
    time.sleep(max(0.0, taken + 4 - time.monotonic()))
    second = start_worker(env, tmp_path / "second.log", pool="solo")
    processes.append(second)
    wait_until(
        lambda: re.search(r"process_events\[.*\] succeeded .*: \{\}", second.output()),
        30,
        "the old message to come back, with nothing left to do",
    )
    assert handled_ids(qapp) == [item["id"]]
    assert statuses(qapp)[item["id"]] == ("processed", 1, None)


def test_failing_handler_backs_off_then_stays_failed(
    qapp: Flask,
    qendpoint: Any,
    database_url: str,
    redis_url: str,
    marks: Path,
    processes: list[Any],
    tmp_path: Path,
) -> None:
    item = event(fail_always=True)
    deliver(qapp.test_client(), qendpoint, item)
    env = worker_env(database_url, marks, redis_url, CELERY_MAX_RETRIES=2, CELERY_BACKOFF=0.25)
    worker = start_worker(env, tmp_path / "worker.log")
    processes.append(worker)
    wait_until(lambda: statuses(qapp)[item["id"]][1] == 3, 60, "three attempts")
    wait_until(lambda: "raised unexpected: EventNotProcessed" in worker.output(), 10, "the end")
    status, attempts, error = statuses(qapp)[item["id"]]
    assert (status, attempts) == ("failed", 3)
    assert error == f"RuntimeError: {item['id']} always fails"
    # Exponential backoff (jitter keeps each wait between half and all of it): the batch's
    # attempt hands the event on to its own task, which retries once more.
    (first,) = re.findall(r"not processed \(handler failed\); again in ([\d.]+)s", worker.output())
    waits = [float(first)] + [float(w) for w in re.findall(r"Retry in ([\d.]+)s", worker.output())]
    assert len(waits) == 2 and 0.125 <= waits[0] <= 0.25 and 0.25 <= waits[1] <= 0.5
    assert handled(qapp) == []


def test_backoff_doubles_up_to_the_cap() -> None:
    class Task:
        retry_backoff, retry_backoff_max, retry_jitter = 2, 600, False

    assert [backoff(Task(), n) for n in range(10)] == [2, 4, 8, 16, 32, 64, 128, 256, 512, 600]
    Task.retry_jitter = True
    assert all(4 <= backoff(Task(), 2) <= 8 for _ in range(50))
    assert process_event.acks_late and process_event.reject_on_worker_lost


def test_enqueue_without_celery_app_names_the_fix(app_factory: Any) -> None:
    app = app_factory(STRIPE_HOOKS_EVENT_CALLBACK="flask_stripe_hooks.celery.enqueue")
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    with app.test_request_context():
        from flask_stripe_hooks.celery import enqueue

        with pytest.raises(RuntimeError, match="make_celery"):
            enqueue("evt_1")
    # In a delivery the event stays pending for the sweeper; Stripe gets its 200.
    response = deliver(app.test_client(), endpoint, build_event("customer.created"))
    assert response.status_code == 200
    assert [e.status for e in rows(app, StripeEvent)] == ["pending"]


# -- the database away -----------------------------------------------------------------------


@pytest.fixture
def cut_proxy(database_url: str) -> Iterator[CutProxy]:
    """A proxy in front of this test's PostgreSQL; ``through(url, proxy)`` is its URL."""
    proxy = CutProxy(sa.make_url(database_url).port or 5432)
    yield proxy
    proxy.close()


def through(database_url: str, proxy: CutProxy) -> str:
    url = sa.make_url(database_url).set(port=proxy.port)
    return url.render_as_string(hide_password=False)


@on_postgresql
@pytest.mark.parametrize("queue", [False, True], ids=["in-request", "queue"])
def test_database_unreachable_gives_503_and_the_retry_succeeds(
    database_url: str, cut_proxy: CutProxy, app_factory: Any, hooks: StripeHooks, queue: bool
) -> None:
    queued: list[str] = []
    config = {"STRIPE_HOOKS_EVENT_CALLBACK": queued.append} if queue else {}
    app = app_factory(through(database_url, cut_proxy), **config)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])

    @hooks.on("customer.created")
    def handler(event: Any, **kwargs: Any) -> None:
        record(app, event.id)

    client = app.test_client()
    item = build_event("customer.created")
    cut_proxy.cut()
    response = deliver(client, endpoint, item)
    assert (response.status_code, response.text) == (503, "database unavailable, retry later\n")
    assert response.mimetype == "text/plain"
    cut_proxy.restore()
    assert rows(app, StripeEvent) == [] and rows(app, WebhookDelivery) == []
    assert queued == []

    response = deliver(client, endpoint, item)  # Stripe's retry
    assert response.status_code == 200
    if queue:
        assert response.text == "queued\n" and queued == [item["id"]]
        with app.app_context():
            assert process_stored(get_state(), item["id"]).outcome == "processed"
    assert handled(app) == [(item["id"], "")]
    assert [(e.status, e.attempts) for e in rows(app, StripeEvent)] == [("processed", 1)]


@on_postgresql
def test_database_lost_in_the_middle_of_a_delivery(
    database_url: str, cut_proxy: CutProxy, app_factory: Any, hooks: StripeHooks
) -> None:
    """The connection drops after the handler wrote its row, before the commit: 503 and
    nothing of the attempt is left; the retry runs the handler once."""
    app = app_factory(through(database_url, cut_proxy))
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    calls: list[str] = []
    failed: list[str] = []

    @hooks.on("customer.created")
    def handler(event: Any, **kwargs: Any) -> None:
        calls.append(event.id)
        record(app, event.id)  # written, not yet committed
        if len(calls) == 1:
            cut_proxy.cut()

    def on_failed(sender: Any, **kwargs: Any) -> None:
        failed.append(kwargs["event"].id)

    with signals.event_failed.connected_to(on_failed):
        item = build_event("customer.created")
        response = deliver(app.test_client(), endpoint, item)
        assert response.status_code == 503
        assert failed == [item["id"]]
        cut_proxy.restore()
        assert rows(app, StripeEvent) == [] and handled(app) == []
        assert rows(app, WebhookDelivery) == []

        assert deliver(app.test_client(), endpoint, item).status_code == 200
        assert handled(app) == [(item["id"], "")]
        assert [d.outcome for d in rows(app, WebhookDelivery)] == ["processed"]


@on_postgresql
def test_worker_with_database_away_retries(
    database_url: str, cut_proxy: CutProxy, app_factory: Any, hooks: StripeHooks
) -> None:
    app = app_factory(through(database_url, cut_proxy), STRIPE_HOOKS_EVENT_CALLBACK=len)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])

    @hooks.on("customer.created")
    def handler(event: Any, **kwargs: Any) -> None:
        record(app, event.id)

    item = build_event("customer.created")
    assert deliver(app.test_client(), endpoint, item).status_code == 200
    cut_proxy.cut()
    with app.app_context():
        result = process_stored(get_state(), item["id"])
    assert (result.outcome, result.reason) == ("unavailable", "database unavailable, retry later")
    cut_proxy.restore()
    assert [e.status for e in rows(app, StripeEvent)] == ["pending"]
    with app.app_context():
        assert process_stored(get_state(), item["id"]).outcome == "processed"
    assert handled(app) == [(item["id"], "")]


def test_concurrent_sweepers_process_each_event_once(app_factory: Any, hooks: StripeHooks) -> None:
    """Several sweepers at once (cron on two machines) over the same pending events."""
    app = app_factory(STRIPE_HOOKS_EVENT_CALLBACK=lambda event_id: None)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])

    @hooks.on("customer.created")
    def handler(event: Any, **kwargs: Any) -> None:
        record(app, event.id)

    ids = []
    for _ in range(30):
        item = build_event("customer.created")
        deliver(app.test_client(), endpoint, item)
        ids.append(item["id"])
    summaries: list[recovery.Summary] = []

    def sweep() -> None:
        with app.app_context():
            state = get_state()
            summaries.append(recovery.process_events(state, recovery.pending_ids(state, ZERO)))

    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(handled_ids(app)) == sorted(ids)
    assert {e.status for e in rows(app, StripeEvent)} == {"processed"}
    assert sum(s.counts.get("processed", 0) for s in summaries) == len(ids)


def test_example_app_worker(
    database_url: str, redis_url: str, processes: list[Any], tmp_path: Path
) -> None:
    """The documented example: EXAMPLE_CELERY_BROKER_URL, the web app acknowledges, the
    worker in example_app/celery_worker.py runs the example's handlers."""
    from example_app import create_app, db
    from example_app.models import Customer
    from flask_migrate import upgrade

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "CELERY_BROKER_URL": redis_url})
    try:
        with app.app_context():
            upgrade()
            endpoint = create_endpoint(db)
        item = build_event("customer.created", {"email": "jane@example.com"})
        response = deliver(app.test_client(), endpoint, item)
        assert (response.status_code, response.text) == (200, "queued\n")
        assert rows(app, Customer) == []

        env = app_env(database_url, tmp_path, EXAMPLE_CELERY_BROKER_URL=redis_url)
        worker = start_worker(
            env, tmp_path / "example.log", app="example_app.celery_worker:celery_app"
        )
        processes.append(worker)
        wait_until(lambda: rows(app, Customer), 60, "the example's handler")
        assert [c.email for c in rows(app, Customer)] == ["jane@example.com"]
        assert statuses(app)[item["id"]] == ("processed", 1, None)
    finally:
        app.extensions["celery"].close()
        with app.app_context():
            db.engine.dispose()
