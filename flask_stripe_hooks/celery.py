"""Queue mode with Celery: a ready task and the wiring for an app factory.

Install the extra (``pip install flask-stripe-hooks[celery]``), then::

    from flask_stripe_hooks.celery import make_celery

    def create_app():
        app = Flask(__name__)
        app.config["CELERY"] = {"broker_url": "redis://localhost:6379/0"}
        app.config["STRIPE_HOOKS_EVENT_CALLBACK"] = "flask_stripe_hooks.celery.enqueue"
        db.init_app(app)
        hooks.init_app(app)
        make_celery(app)          # or init_celery(your_celery_app, app)
        return app

    # worker.py:  celery_app = create_app().extensions["celery"]
    # run:        celery -A worker:celery_app worker

A delivery stores the event as pending, commits and calls :func:`enqueue`, which sends
:func:`process_event` to the broker. The task runs inside the Flask app's context and calls
``hooks.process_stored(event_id)`` (the same pipeline as a delivery): it locks the row,
skips an event already processed, runs the handlers and marks it processed in one
transaction. When a handler raises, the error and the attempt are recorded on the
event and the task retries with exponential backoff (``retry_backoff`` seconds, doubling,
capped at ``retry_backoff_max``, at most ``max_retries`` times; change them with Celery's
``task_annotations``).

The task is acknowledged late and rejected back to the queue when its worker process dies,
so a worker killed in the middle of a handler does not lose the event; if the message is
lost anyway, ``flask stripe-hooks process-pending`` (or the :func:`process_pending` task on
a beat schedule) picks it up.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager

from celery import Celery, Task, shared_task
from flask import Flask, current_app, has_app_context

from .errors import EventNotProcessed
from .outcomes import BUSY, MISSING
from .pipeline import process_stored
from .state import get_state
from .utils import parse_duration

log = logging.getLogger("flask_stripe_hooks")

#: The name the task is registered under (route it with ``task_routes`` if you like).
TASK_NAME = "flask_stripe_hooks.process_event"
SWEEP_TASK_NAME = "flask_stripe_hooks.process_pending"
RECONCILE_TASK_NAME = "flask_stripe_hooks.reconcile"

_FLASK_APP = "flask_stripe_hooks_app"


def init_celery(celery_app: Celery, flask_app: Flask) -> Celery:
    """Tie ``celery_app`` to ``flask_app``: tasks run in its app context, and
    :func:`enqueue` sends through ``celery_app``.

    Sets ``flask_app.extensions["celery"]``, as Flask's Celery guide does, unless the app
    has a Celery app there already.
    """
    setattr(celery_app, _FLASK_APP, flask_app)
    flask_app.extensions.setdefault("celery", celery_app)
    return celery_app


def make_celery(flask_app: Flask) -> Celery:
    """A Celery app configured from ``flask_app.config["CELERY"]`` (a dict of Celery's
    lower-case settings), tied to ``flask_app`` with :func:`init_celery`."""
    celery_app = Celery(flask_app.import_name)
    celery_app.config_from_object(flask_app.config.get("CELERY") or {})
    celery_app.set_default()
    return init_celery(celery_app, flask_app)


def _celery_for(flask_app: Flask) -> Celery:
    celery_app = flask_app.extensions.get("celery")
    if celery_app is None:
        raise RuntimeError(
            "STRIPE_HOOKS_EVENT_CALLBACK is 'flask_stripe_hooks.celery.enqueue' but this app"
            " has no Celery app. Call 'flask_stripe_hooks.celery.make_celery(app)' (or"
            " 'init_celery(celery_app, app)') in your app factory."
        )
    return celery_app  # type: ignore[no-any-return]


def enqueue(event_id: str) -> None:
    """The queue-mode callback: send :func:`process_event` for ``event_id``.

    Set ``STRIPE_HOOKS_EVENT_CALLBACK = "flask_stripe_hooks.celery.enqueue"``.
    """
    celery_app = _celery_for(current_app)
    celery_app.tasks[TASK_NAME].apply_async((event_id,))


@contextmanager
def _app_context(celery_app: Celery) -> Iterator[None]:
    """The Flask app context the task runs in: the caller's (a Flask-aware Task base
    pushed one) or a fresh one of the app given to :func:`init_celery`."""
    if has_app_context() and "stripe_hooks" in current_app.extensions:
        yield
        return
    flask_app = getattr(celery_app, _FLASK_APP, None)
    if flask_app is None:
        raise RuntimeError(
            "This Celery app is not tied to a Flask app. Call"
            " 'flask_stripe_hooks.celery.init_celery(celery_app, flask_app)' (or"
            " 'make_celery(flask_app)') where the worker imports the Celery app."
        )
    with flask_app.app_context():
        yield


def backoff(task: Task, retries: int) -> float:
    """Seconds before retry number ``retries + 1``: doubling from ``retry_backoff``, at
    most ``retry_backoff_max``, with jitter (half to all of it) unless ``retry_jitter``
    is off."""
    factor = task.retry_backoff
    factor = 1.0 if factor is True else float(factor or 0)
    delay = min(float(task.retry_backoff_max), factor * 2**retries)
    if task.retry_jitter:
        delay = random.uniform(delay / 2, delay)
    return delay


@shared_task(
    bind=True,
    name=TASK_NAME,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=10,
    retry_backoff=2,
    retry_backoff_max=600,
    retry_jitter=True,
)
def process_event(self: Task, event_id: str) -> str:
    """Process one stored event; retry with backoff if its handlers fail.

    Returns the outcome: ``processed``, ``duplicate`` (processed already, by another
    message, the sweeper or a redelivery), ``ignored``, ``dead`` (failed too often),
    ``paused`` (it stays pending; ``resume`` runs it) or ``missing`` (no such event
    stored). A handler's ``Retry`` queues the task again when the event is due.
    """
    with _app_context(self.app):
        result = process_stored(get_state(), event_id)
    if result.ok:
        return result.outcome
    if result.outcome == MISSING:
        log.warning("process_event: no stored event %s (pruned?); nothing to do", event_id)
        return MISSING
    if result.retry_after is not None:  # a handler said "not yet": queue it for when it is due
        raise self.retry(
            countdown=result.retry_after,
            exc=EventNotProcessed(f"event {event_id}: {result.reason or result.outcome}"),
        )
    # failed (a handler raised; recorded on the event), unavailable (database away) or busy
    # (another worker holds the row, perhaps one that just died): try again later.
    if result.outcome != BUSY:
        log.warning(
            "event %s not processed (%s), attempt %d; retrying",
            event_id,
            result.reason,
            self.request.retries + 1,
        )
    raise self.retry(
        countdown=backoff(self, self.request.retries),
        exc=EventNotProcessed(f"event {event_id}: {result.reason or result.outcome}"),
    )


@shared_task(bind=True, name=SWEEP_TASK_NAME, ignore_result=True)
def process_pending(self: Task, older_than: str = "5m") -> dict[str, int]:
    """The sweeper as a task, for a beat schedule: process pending events older than
    ``older_than`` whose queue message was lost. Returns the counts by outcome."""
    from . import recovery

    with _app_context(self.app):
        state = get_state()
        ids = recovery.pending_ids(state, parse_duration(older_than))
        return recovery.process_events(state, ids).counts


@shared_task(bind=True, name=RECONCILE_TASK_NAME, ignore_result=True)
def reconcile(
    self: Task, since: str = "3d", account: str = "", mode: str = "test"
) -> dict[str, int]:
    """``fetch-missed --undelivered`` as a task, for a beat schedule: store and process the
    events Stripe failed to deliver within ``since``. Returns the counts by outcome."""
    from . import backfill

    with _app_context(self.app):
        state = get_state()
        since_delta = parse_duration(since)
        _, summary = backfill.reconcile(
            state, since=since_delta, account=account, livemode=mode == "live"
        )
        return summary.counts


__all__ = [
    "EventNotProcessed",
    "TASK_NAME",
    "enqueue",
    "init_celery",
    "make_celery",
    "process_event",
    "process_pending",
    "reconcile",
]
