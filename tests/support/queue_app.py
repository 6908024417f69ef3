"""The app that the queue and scale tests run in other processes (a Celery worker, gunicorn).

Configured from the environment:

- ``DATABASE_URL``: the database (required).
- ``MARKS``: a folder for the handlers' markers and the on-commit log (required).
- ``REDIS_URL``: queue mode through :mod:`flask_stripe_hooks.celery` with this broker.
- ``CELERY_MAX_RETRIES``, ``CELERY_BACKOFF``: the task's retry settings (fast in tests).
- ``CELERY_VISIBILITY_TIMEOUT``: seconds before Redis hands an unacknowledged message out
  again (after a worker died); the worker looks for such messages every second.
- ``HANDLER_SLEEP_MS``: every handler call sleeps this long (the benchmark's 100 ms).
- ``MAX_ATTEMPTS``: ``STRIPE_HOOKS_MAX_ATTEMPTS``.
- ``SWEEP_EVERY``, ``SWEEP_OLDER_THAN``: the ready-made beat schedule's sweeper, faster (its
  entry from ``make_celery``, with these numbers).

In the worker (:mod:`queue_worker`), each ``event-dead`` signal appends the event id to
``dead.log`` in ``MARKS``.

Handlers do what the event's ``data.object.metadata`` asks:

- ``fail_once``: raise on the first call for this event id (in any process), succeed after.
- ``fail_always``: always raise (with the text of ``error-<id>`` in ``MARKS``, once written).
- ``retry_once``: raise ``Retry(after=0.5)`` on the first call for this event id.
- ``ignore``: raise ``Ignore`` with this reason.
- ``hang_once``: on the first call write ``hang-<id>.pid`` and sleep (to be killed).
- ``on_commit``: register an on-commit callback appending ``<id> <pid>`` to ``commits.log``.

Every successful call writes one ``handled`` row in the event's transaction.
"""

from __future__ import annotations

import os
import time
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_stripe_hooks import Ignore, Retry, StripeHooks, on_commit

db = SQLAlchemy()
hooks = StripeHooks()
handled = sa.Table(
    "handled",
    db.metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("event_id", sa.String(255), nullable=False),
    sa.Column("note", sa.String(255), nullable=False, default=""),
)


def marks() -> str:
    return os.environ["MARKS"]


def first_time(name: str) -> bool:
    """True for the first caller across all processes (an O_EXCL marker file)."""
    try:
        fd = os.open(os.path.join(marks(), name), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def create_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=os.environ["DATABASE_URL"],
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        SECRET_KEY="queue-tests",
    )
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        app.config["STRIPE_HOOKS_EVENT_CALLBACK"] = "flask_stripe_hooks.celery.enqueue"
        app.config["CELERY"] = {
            "broker_url": redis_url,
            "task_ignore_result": True,
            "worker_prefetch_multiplier": 1,
            "broker_connection_retry_on_startup": True,
            "broker_transport_options": {
                "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", 3600)),
                # Look for messages of dead workers every second, not every 100 s.
                "unacked_restore_interval": 1,
                "unacked_restore_throttle": 1,
            },
            "task_annotations": {
                "flask_stripe_hooks.process_event": {
                    "max_retries": int(os.environ.get("CELERY_MAX_RETRIES", 10)),
                    "retry_backoff": float(os.environ.get("CELERY_BACKOFF", 0.2)),
                    "retry_backoff_max": 2,
                }
            },
        }
    if os.environ.get("MAX_ATTEMPTS"):
        app.config["STRIPE_HOOKS_MAX_ATTEMPTS"] = int(os.environ["MAX_ATTEMPTS"])
    app.config.update(config)
    db.init_app(app)
    hooks.init_app(app)
    if redis_url:
        from flask_stripe_hooks.celery import make_celery

        celery_app = make_celery(app)
        if os.environ.get("SWEEP_EVERY"):
            (sweeper,) = celery_app.conf.beat_schedule.values()
            sweeper["schedule"] = float(os.environ["SWEEP_EVERY"])
            sweeper["kwargs"] = {"older_than": os.environ.get("SWEEP_OLDER_THAN", "0")}
    return app


@hooks.on("*")
def handle(event: Any, **kwargs: Any) -> None:
    meta = (event.object or {}).get("metadata") or {}
    sleep_ms = float(os.environ.get("HANDLER_SLEEP_MS") or 0)
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    if meta.get("hang_once") and first_time(f"hang-{event.id}"):
        with open(os.path.join(marks(), f"hang-{event.id}.pid"), "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
    if meta.get("fail_once") and first_time(f"fail-{event.id}"):
        raise RuntimeError(f"{event.id} fails on its first attempt")
    if meta.get("fail_always"):
        message = os.path.join(marks(), f"error-{event.id}")
        if os.path.exists(message):
            with open(message) as f:
                raise RuntimeError(f.read())
        raise RuntimeError(f"{event.id} always fails")
    if meta.get("retry_once") and first_time(f"retry-{event.id}"):
        raise Retry("the customer is not stored yet", after=0.5)
    if meta.get("ignore"):
        raise Ignore(meta["ignore"])
    db.session.execute(handled.insert().values(event_id=event.id, note=str(os.getpid())))
    if meta.get("on_commit"):

        def committed() -> None:
            with open(os.path.join(marks(), "commits.log"), "a") as f:
                f.write(f"{event.id} {os.getpid()}\n")

        on_commit(committed)


def log_dead(sender: Any, **kwargs: Any) -> None:
    """An ``event-dead`` receiver (the worker connects it): append the id to ``dead.log``."""
    with open(os.path.join(marks(), "dead.log"), "a") as f:
        f.write(f"{kwargs['event'].id}\n")
