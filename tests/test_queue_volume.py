"""Queue mode at volume, with real parts: the publisher that sends event ids in batches from
a thread, a hung broker (a real ``redis-server`` stopped with SIGSTOP), a killed worker whose
events the ready-made beat schedule brings back, and a batch's order.

The worker runs ``tests/support/queue_app.py`` (see its docstring for what the test handlers do).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from flask import Flask, current_app
from flask_stripe_hooks import StripeHooks, signals
from flask_stripe_hooks import celery as fsh_celery
from flask_stripe_hooks.celery import (
    BATCH_TASK_NAME,
    BEAT_SCHEDULE,
    TASK_NAME,
    init_celery,
    make_celery,
    process_events,
    publisher,
)
from flask_stripe_hooks.metrics import init_metrics
from flask_stripe_hooks.models import StripeEvent
from flask_stripe_hooks.testing import build_event, create_endpoint, deliver, new_secret, post_event
from prometheus_client import CollectorRegistry

from support import queue_app
from support.helpers import handled, missing, on_postgresql, rows
from support.queue_support import (
    app_env,
    free_port,
    port_open,
    start_gunicorn,
    start_worker,
    wait_until,
)
from test_queue import event, handled_ids, queued, statuses

# -- a Redis server of the test's own (to stop and start) ------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server for this test only: ``(url, process)``; SIGSTOP and SIGCONT are safe."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("a Redis server", "apt-get install redis-server")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: port_open(port), 20, "redis-server")
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(10)


def queue_mode_app(
    database_url: str, redis_url: str, marks: Path, monkeypatch: pytest.MonkeyPatch, **config: Any
) -> Flask:
    """``queue_app`` in this process, in queue mode on ``redis_url``."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MARKS", str(marks))
    monkeypatch.setenv("REDIS_URL", redis_url)
    app = queue_app.create_app(**config)
    with app.app_context():
        queue_app.db.create_all()
    return app


def close(app: Flask) -> None:
    app.extensions["celery"].close()
    with app.app_context():
        queue_app.db.engine.dispose()


def library_errors(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "flask_stripe_hooks" and r.levelno >= logging.ERROR and text in r.getMessage()
    ]


# -- a hung broker ---------------------------------------------------------------------------


@on_postgresql
def test_hung_broker_never_holds_a_delivery(
    database_url: str,
    own_redis: tuple[str, subprocess.Popen[bytes]],
    marks: Path,
    monkeypatch: pytest.MonkeyPatch,
    processes: list[Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis stopped with SIGSTOP (it accepts connections and never answers): every delivery
    is answered at once, the failed sends are counted and logged once, and the events are
    sent, then processed once each, after SIGCONT."""
    redis_url, server = own_redis
    registry = CollectorRegistry()
    app = queue_mode_app(database_url, redis_url, marks, monkeypatch)
    init_metrics(app, registry)
    failures: list[list[str]] = []

    def failed(sender: Any, event_ids: list[str], exception: Exception, **kwargs: Any) -> None:
        failures.append(event_ids)

    try:
        with app.app_context():
            endpoint = create_endpoint(queue_app.db)
        client = app.test_client()
        deliver(client, endpoint, event())  # the publisher's connection is open
        with app.app_context():
            assert fsh_celery.flush(10)
        server.send_signal(signal.SIGSTOP)
        items = [event() for _ in range(3)]
        with signals.publish_failed.connected_to(failed, sender=app):
            for item in items:
                started = time.monotonic()
                response = deliver(client, endpoint, item)
                assert time.monotonic() - started < 3  # a hung broker holds no delivery
                assert (response.status_code, response.text) == (200, "queued\n")
                time.sleep(1)  # the first sends hang meanwhile
            wait_until(lambda: len(failures) >= 2, 60, "two failed sends")
        assert {i for ids in failures for i in ids} <= {i["id"] for i in items}
        assert all(statuses(app)[i["id"]][0] == "pending" for i in items)
        # Counted each time, logged once (at most once a minute).
        sent = registry.get_sample_value("stripe_hooks_publish_failures_total")
        assert sent is not None and sent >= 2
        (line,) = library_errors(caplog, "could not send")
        assert "they stay pending and are sent again when it answers" in line

        server.send_signal(signal.SIGCONT)
        with app.app_context():
            assert fsh_celery.flush(60)  # sent again once Redis answers
        env = app_env(database_url, marks, REDIS_URL=redis_url)
        processes.append(start_worker(env, tmp_path / "worker.log", pool="solo"))
        ids = [i["id"] for i in items]
        wait_until(lambda: all(statuses(app)[i][0] == "processed" for i in ids), 60, "the worker")
        assert sorted(i for i in handled_ids(app) if i in ids) == sorted(ids)  # once each
        assert len(handled(app)) == len(set(handled_ids(app)))
    finally:
        close(app)


@on_postgresql
def test_hung_broker_behind_gunicorn(
    database_url: str,
    own_redis: tuple[str, subprocess.Popen[bytes]],
    marks: Path,
    monkeypatch: pytest.MonkeyPatch,
    processes: list[Any],
    tmp_path: Path,
) -> None:
    """As deployed: gunicorn's sync workers in front, Redis hung for 5 seconds (over two
    publish timeouts). Every delivery is answered at once (none waits for the broker, none meets
    the worker timeout), and once Redis answers again every event is sent and processed once."""
    redis_url, server = own_redis
    app = queue_mode_app(database_url, redis_url, marks, monkeypatch)
    try:
        secret = new_secret()
        with app.app_context():
            endpoint = create_endpoint(queue_app.db, secret=secret)
        env = app_env(database_url, marks, REDIS_URL=redis_url)
        gunicorn, base = start_gunicorn(env, tmp_path / "gunicorn.log", workers=2)
        processes.append(gunicorn)
        url = f"{base}/stripe/webhook/{endpoint.uuid}/"
        items = [event() for _ in range(4)]  # the workers' publishers are up
        assert {post_event(url, item, secret)[0] for item in items} == {200}
        server.send_signal(signal.SIGSTOP)
        hung = time.monotonic()
        slowest = 0.0
        while time.monotonic() - hung < 5:
            items.append(event())
            started = time.monotonic()
            assert post_event(url, items[-1], secret, timeout=30) == (200, "queued\n")
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.2)
        server.send_signal(signal.SIGCONT)
        assert slowest < 3

        processes.append(start_worker(env, tmp_path / "worker.log", pool="solo"))
        ids = [i["id"] for i in items]
        wait_until(lambda: all(statuses(app)[i][0] == "processed" for i in ids), 90, "the events")
        assert handled_ids(app) == sorted(ids)  # each once
        assert "could not send" in gunicorn.output()
    finally:
        close(app)


# -- a killed worker and the ready-made beat schedule ----------------------------------------


def test_beat_schedule_is_ready_made() -> None:
    """Every minute, the events pending for over two minutes: within three minutes of their
    arrival. ``make_celery`` adds it; an entry of the app's own with its name wins."""
    assert BEAT_SCHEDULE == {
        "stripe-hooks-process-pending": {
            "task": "flask_stripe_hooks.process_pending",
            "schedule": 60.0,
            "kwargs": {"older_than": "2m"},
        }
    }
    flask_app = Flask(__name__)
    flask_app.config["CELERY"] = {"broker_url": "memory://"}
    celery_app = make_celery(flask_app)
    assert celery_app.conf.beat_schedule == BEAT_SCHEDULE
    celery_app.conf.beat_schedule["stripe-hooks-process-pending"]["schedule"] = 5.0
    assert BEAT_SCHEDULE["stripe-hooks-process-pending"]["schedule"] == 60.0  # a copy
    mine = {"stripe-hooks-process-pending": {"task": "x", "schedule": 1.0}}
    flask_app.config["CELERY"]["beat_schedule"] = mine
    assert make_celery(flask_app).conf.beat_schedule == mine


@on_postgresql
def test_killed_worker_events_come_back_with_the_beat_schedule(
    database_url: str,
    redis_url: str,
    marks: Path,
    monkeypatch: pytest.MonkeyPatch,
    processes: list[Any],
    tmp_path: Path,
) -> None:
    """``kill -9`` of the whole worker in the middle of a batch: its message stays
    unacknowledged in Redis (an hour, by default), and its events pending. The beat schedule
    (sped up) sweeps them: each runs once, and none runs twice."""
    monkeypatch.setattr(fsh_celery, "LINGER", 1.0)  # the six share one message
    app = queue_mode_app(database_url, redis_url, marks, monkeypatch)
    try:
        with app.app_context():
            endpoint = create_endpoint(queue_app.db)
        client = app.test_client()
        items = [event(hang_once=True)] + [event() for _ in range(5)]
        for item in items:
            assert deliver(client, endpoint, item).status_code == 200
        ids = [i["id"] for i in items]
        with app.app_context():
            assert fsh_celery.flush(10)
        assert len(queued(redis_url)) == 1  # one batch

        env = app_env(database_url, marks, REDIS_URL=redis_url)
        first = start_worker(env, tmp_path / "first.log", pool="solo")
        processes.append(first)
        wait_until((marks / f"hang-{ids[0]}.pid").exists, 60, "the handler to start")
        first.kill()
        assert {statuses(app)[i][0] for i in ids} == {"pending"}  # six stuck events

        swept = dict(env, SWEEP_EVERY="1", SWEEP_OLDER_THAN="2s")
        beat = ("-B", "--schedule", str(tmp_path / "beat-schedule"))
        second = start_worker(swept, tmp_path / "second.log", pool="solo", extra=beat)
        processes.append(second)
        wait_until(lambda: all(statuses(app)[i][0] == "processed" for i in ids), 60, "the sweep")
        assert handled_ids(app) == sorted(ids)  # each once
        assert re.search(r"process_pending\[[\w-]+\] succeeded", second.output())
        assert all(statuses(app)[i][1] == 1 for i in ids)  # the killed try never committed
    finally:
        close(app)


# -- a batch ---------------------------------------------------------------------------------


def test_a_batch_runs_oldest_created_first_and_hands_failures_on(
    app_factory: Any, hooks: StripeHooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch runs its events by Stripe's ``created``, whatever their order in the message;
    events done already and unknown ids cost nothing; a failed one goes on as its own task."""
    app = app_factory(
        STRIPE_HOOKS_EVENT_CALLBACK=lambda event_id: None, CELERY={"broker_url": "memory://"}
    )
    celery_app = make_celery(app)
    ran: list[str] = []

    @hooks.on("customer")
    def handler(event: Any, **kwargs: Any) -> None:
        ran.append(event.id)
        if event.data["object"].get("metadata", {}).get("fail"):
            raise RuntimeError("broken")

    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    now = int(time.time())
    made = [
        build_event("customer.updated", {"metadata": {"n": n}}, created=now - 10 * n)
        for n in range(4)
    ]  # the later in the list, the older
    broken = build_event("customer.updated", {"metadata": {"fail": "yes"}}, created=now - 100)
    client = app.test_client()
    for item in [*made, broken]:
        assert deliver(client, endpoint, item).text == "queued\n"
    done = made[0]
    with app.app_context():
        assert app.extensions["stripe_hooks"].hooks.process_stored(done["id"]).ok
    ran.clear()

    handed: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(
        celery_app.tasks[TASK_NAME], "apply_async", lambda *a, **k: handed.append((a, k))
    )
    batch = [made[1]["id"], done["id"], "evt_unknown", made[3]["id"], broken["id"], made[2]["id"]]
    with app.app_context():
        counts = process_events.apply(args=(batch,)).get()
    assert ran == [broken["id"], made[3]["id"], made[2]["id"], made[1]["id"]]
    assert counts == {"failed": 1, "processed": 3}
    ((args, options),) = handed
    assert args == ((broken["id"],),) and options["retries"] == 1 and options["countdown"] > 0
    assert {e.id: e.status for e in rows(app, StripeEvent)}[broken["id"]] == "failed"


# -- the publisher ---------------------------------------------------------------------------


@pytest.fixture
def tied(redis_url: str) -> Iterator[tuple[Celery, Flask]]:
    """A Celery app on the session's Redis tied to a bare Flask app."""
    celery_app = Celery("publisher-test", broker=redis_url)
    flask_app = Flask(__name__)
    init_celery(celery_app, flask_app)
    yield celery_app, flask_app
    celery_app.close()


def test_publisher_sends_ids_in_batches_from_its_thread(
    tied: tuple[Celery, Flask], redis_url: str
) -> None:
    celery_app, _ = tied
    ids = [f"evt_{n:04d}" for n in range(250)]
    sender = publisher(celery_app)
    for event_id in ids:
        sender.put(event_id)  # no broker round trip here
    assert sender.flush(10)
    messages = queued(redis_url)
    assert {task for task, _ in messages} == {BATCH_TASK_NAME}
    assert [i for _, batch in messages for i in batch] == ids  # in order, each once
    assert 3 <= len(messages) <= 10 and all(len(batch) <= 100 for _, batch in messages)


def test_publisher_starts_afresh_in_a_forked_child(
    tied: tuple[Celery, Flask], redis_url: str
) -> None:
    """A web server forks its workers after the app was loaded: a child's publisher has a
    thread and a connection of its own, and leaves the parent's ids alone."""
    celery_app, _ = tied
    sender = publisher(celery_app)
    sender.put("evt_parent")
    assert sender.flush(10)
    with warnings.catch_warnings():  # Python 3.12+ warns of fork() in a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report by exit status only
        try:
            sender.put("evt_child")
            os._exit(0 if sender.flush(10) else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [batch for _, batch in queued(redis_url)] == [["evt_parent"], ["evt_child"]]


def test_publisher_keeps_ids_while_the_broker_refuses(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused connection: the ids are kept (up to the backlog) and sent again later; each
    failed send is signalled, and one line is logged for all of them."""
    monkeypatch.setattr(fsh_celery, "BACKLOG", 5)
    monkeypatch.setattr(fsh_celery, "RESEND_AFTER", (0.05, 0.1))
    celery_app = Celery("refused", broker=f"redis://127.0.0.1:{free_port()}/0")
    flask_app = Flask(__name__)
    init_celery(celery_app, flask_app)
    failures: list[list[str]] = []

    def failed(sender: Any, event_ids: list[str], exception: Exception, **kwargs: Any) -> None:
        failures.append(list(event_ids))

    with signals.publish_failed.connected_to(failed, sender=flask_app):
        sender = publisher(celery_app)
        for n in range(8):
            sender.put(f"evt_{n}")
        wait_until(lambda: len(failures) >= 3, 30, "three failed sends")
        assert not sender.flush(0.2)
    assert failures[0] == [f"evt_{n}" for n in range(5)]  # the backlog: three left to the sweeper
    assert all(ids == failures[0] for ids in failures)
    assert len(library_errors(caplog, "could not send")) == 1
    assert len(library_errors(caplog, "event ids wait for the Celery broker")) == 1
    celery_app.close()


def test_user_callback_failures_are_counted_and_logged_once(
    app_factory: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A callback of the app's own that raises (its broker is away): each failure counted,
    one line logged for all of them, the events left pending."""
    from flask_stripe_hooks.pipeline import queue
    from flask_stripe_hooks.utils import Throttle

    monkeypatch.setattr(queue, "_failing", Throttle(60.0))  # no earlier test's line

    def broken(event_id: str) -> None:
        raise ConnectionError("broker unreachable")

    registry = CollectorRegistry()
    app = app_factory(STRIPE_HOOKS_EVENT_CALLBACK=broken)
    init_metrics(app, registry)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    client = app.test_client()
    for _ in range(3):
        assert deliver(client, endpoint, build_event("customer.created")).text == "queued\n"
    assert registry.get_sample_value("stripe_hooks_publish_failures_total") == 3
    assert [e.status for e in rows(app, StripeEvent)] == ["pending"] * 3
    (line,) = library_errors(caplog, "event callback failed")
    assert "it stays pending for the sweeper" in line


def test_eager_celery_runs_the_batch_in_the_caller(app_factory: Any, hooks: StripeHooks) -> None:
    """``task_always_eager`` (a user's tests): no thread, the task runs at once."""
    app = app_factory(
        STRIPE_HOOKS_EVENT_CALLBACK="flask_stripe_hooks.celery.enqueue",
        CELERY={"broker_url": "memory://", "task_always_eager": True},
    )
    make_celery(app)
    seen: list[str] = []

    @hooks.on("customer.created")
    def handler(event: Any, **kwargs: Any) -> None:
        seen.append(current_app.name)

    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    item = build_event("customer.created")
    assert deliver(app.test_client(), endpoint, item).text == "queued\n"
    assert seen == [app.name]
    assert [e.status for e in rows(app, StripeEvent)] == ["processed"]
    assert publisher(app.extensions["celery"])._thread is None  # no thread was needed
