"""The apps of ``drain.py``: flask-stripe-hooks as ``flask_systems.create_fsh`` builds it (the
same handler, which writes one ``handled`` row), in queue mode on a Redis broker.

``celery -A drain_worker:celery_app worker`` (run with ``bench/`` on the path) is the worker;
``DATABASE_URL`` and ``REDIS_URL`` say where.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, current_app
from flask_stripe_hooks.celery import TASK_NAME, make_celery

import flask_systems


def create_queued(db_url: str, redis_url: str, *, callback: Any = None) -> Flask:
    """The benchmark's flask-stripe-hooks app in queue mode: ``callback`` is the queue
    callback (default: the Celery integration's publisher)."""
    app = flask_systems.create_fsh(
        db_url,
        STRIPE_HOOKS_EVENT_CALLBACK=callback or "flask_stripe_hooks.celery.enqueue",
        CELERY={
            "broker_url": redis_url,
            "task_ignore_result": True,
            "worker_prefetch_multiplier": 1,
            "broker_connection_retry_on_startup": True,
        },
    )
    make_celery(app)
    return app


def send_each(event_id: str) -> None:
    """The way queue mode published before batches: one ``process_event`` message per event,
    sent inside the request."""
    current_app.extensions["celery"].tasks[TASK_NAME].apply_async((event_id,))


if "REDIS_URL" in os.environ and "DATABASE_URL" in os.environ:
    flask_app = create_queued(os.environ["DATABASE_URL"], os.environ["REDIS_URL"])
    celery_app = flask_app.extensions["celery"]
