"""Queue mode with Celery: a ready task, the publisher that feeds it, and the wiring for an
app factory.

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
    #             celery -A worker:celery_app beat     # the sweeper, every minute

A delivery stores the event as pending, commits and calls :func:`enqueue`, which only hands
the id to this process's :class:`Publisher`: the request never waits for the broker. The
publisher's thread sends the ids that came in within :data:`LINGER` seconds as one
:func:`process_events` message (at most :data:`BATCH` ids each), over one connection of its
own with :data:`PUBLISH_TIMEOUT` as its connect and socket timeouts and no retry loop. When the
broker refuses or does not answer, the ids are kept (at most :data:`BACKLOG`) and sent again
when it answers; ``publish-failed`` is sent for each failed message, and one line a minute is
logged. The events are durable all along: if this process ends first, the sweeper runs them.

:func:`process_events` runs in the Flask app's context: the batch's events that are not done
yet, oldest ``created`` first, each through ``process_stored`` (the same pipeline as a
delivery: lock the row, skip an event already processed, run the handlers, mark it processed,
one transaction each). An event that needs another try (a handler raised, another worker holds
it, the database is away, a handler's ``Retry``) goes on as its own :func:`process_event` task,
which retries with exponential backoff (``retry_backoff`` seconds, doubling, capped at
``retry_backoff_max``, at most ``max_retries`` times; change them with Celery's
``task_annotations``).

Both tasks are acknowledged late and rejected back to the queue when their worker process dies,
so a worker killed in the middle of a handler does not lose the event. When the whole worker
dies, Redis hands its message out again only after the transport's ``visibility_timeout``; the
sweeper (:func:`process_pending`, every minute in :data:`BEAT_SCHEDULE`) runs such events
first, and the late message then finds them processed.
"""

from __future__ import annotations

import atexit
import copy
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery, Task, shared_task
from flask import Flask, current_app, has_app_context

from . import signals
from .errors import EventNotProcessed
from .outcomes import BUSY, MISSING
from .pipeline import process_stored
from .state import get_state
from .utils import Throttle, parse_duration

log = logging.getLogger("flask_stripe_hooks")

#: The names the tasks are registered under (route them with ``task_routes`` if you like).
TASK_NAME = "flask_stripe_hooks.process_event"
BATCH_TASK_NAME = "flask_stripe_hooks.process_events"
SWEEP_TASK_NAME = "flask_stripe_hooks.process_pending"
RECONCILE_TASK_NAME = "flask_stripe_hooks.reconcile"

#: Seconds the publisher waits after an id for others to share its message.
LINGER = 0.02
#: Event ids in one message, at most.
BATCH = 100
#: Ids a process keeps while the broker is away; past that, new ones wait for the sweeper.
BACKLOG = 10_000
#: Seconds a publish may wait for the broker (connect and socket timeouts).
PUBLISH_TIMEOUT = 2.0
#: Seconds between tries while the broker is away: doubling up to the second number.
RESEND_AFTER = (1.0, 10.0)

#: The sweeper every minute, for events pending for over two minutes (their message was lost,
#: or their worker died): such an event runs within three minutes of its arrival.
#: :func:`make_celery` adds it to ``beat_schedule``; run ``celery beat`` to use it.
BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "stripe-hooks-process-pending": {
        "task": SWEEP_TASK_NAME,
        "schedule": 60.0,
        "kwargs": {"older_than": "2m"},
    },
}

_FLASK_APP = "flask_stripe_hooks_app"
_PUBLISHER = "flask_stripe_hooks_publisher"


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
    lower-case settings), tied to ``flask_app`` with :func:`init_celery`, with the sweeper
    of :data:`BEAT_SCHEDULE` in its ``beat_schedule`` (an entry of the same name in the
    settings wins)."""
    celery_app = Celery(flask_app.import_name)
    celery_app.config_from_object(flask_app.config.get("CELERY") or {})
    given = celery_app.conf.beat_schedule or {}
    celery_app.conf.beat_schedule = {**copy.deepcopy(BEAT_SCHEDULE), **given}
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
    return celery_app


def enqueue(event_id: str) -> None:
    """The queue-mode callback: hand ``event_id`` to this process's :class:`Publisher`, which
    sends it to the broker in a :func:`process_events` message. Never waits for the broker.

    Set ``STRIPE_HOOKS_EVENT_CALLBACK = "flask_stripe_hooks.celery.enqueue"``.
    """
    publisher(_celery_for(current_app)).put(event_id)


def flush(timeout: float = PUBLISH_TIMEOUT + 1.0, flask_app: Flask | None = None) -> bool:
    """Wait until the ids handed to :func:`enqueue` in this process are sent (at most
    ``timeout`` seconds); whether they are. For tests, and scripts that exit right after
    queueing (an exiting process waits up to :data:`PUBLISH_TIMEOUT` on its own)."""
    return publisher(_celery_for(flask_app or current_app)).flush(timeout)


def publisher(celery_app: Celery) -> Publisher:
    """The :class:`Publisher` of ``celery_app`` in this process."""
    found: Publisher | None = getattr(celery_app, _PUBLISHER, None)
    if found is None:
        with _creating:  # one, whichever request thread comes first
            found = getattr(celery_app, _PUBLISHER, None)
            if found is None:
                found = Publisher(celery_app, getattr(celery_app, _FLASK_APP, None))
                setattr(celery_app, _PUBLISHER, found)
    return found


_publishers: weakref.WeakSet[Publisher] = weakref.WeakSet()
_creating = threading.Lock()


class Publisher:
    """Sends event ids to the broker from a thread of this process, several per message.

    :meth:`put` only appends the id to a list. The thread, started on the first id (again in a
    forked child), waits :data:`LINGER` seconds after the first id, then sends what came as
    :func:`process_events` messages of up to :data:`BATCH` ids, through a connection and
    producer of its own (set up once, again after a failure), with :data:`PUBLISH_TIMEOUT` as
    its connect and socket timeouts unless ``broker_transport_options`` sets them, and no
    retries. Ids of a failed message are kept and sent again (every :data:`RESEND_AFTER`
    seconds, doubling); at most :data:`BACKLOG` are kept. With ``task_always_eager`` (tests),
    :meth:`put` runs the task at once instead.
    """

    def __init__(self, celery_app: Celery, flask_app: Flask | None) -> None:
        self.celery_app = celery_app
        self.flask_app = flask_app
        self._reset()
        _publishers.add(self)

    def _reset(self) -> None:
        """A fresh start: on creation, and in a forked child (the parent's ids, thread and
        connection stay the parent's)."""
        self._lock = threading.Lock()
        self._wanted = threading.Condition(self._lock)  # ids to send
        self._idle = threading.Condition(self._lock)  # all sent
        self._ids: list[str] = []
        self._sending = 0
        self._thread: threading.Thread | None = None
        self._producer: Any = None
        self._failing, self._full = Throttle(60.0), Throttle(60.0)  # a line a minute, each

    def put(self, event_id: str) -> None:
        """Queue ``event_id`` for the next message."""
        if self.celery_app.conf.task_always_eager:
            self.celery_app.tasks[BATCH_TASK_NAME].apply_async(([event_id],))
            return
        with self._lock:
            if len(self._ids) >= BACKLOG:
                self._dropped(event_id)
                return
            self._ids.append(event_id)
            if len(self._ids) == 1:
                self._wanted.notify()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="flask-stripe-hooks-publisher", daemon=True
                )
                self._thread.start()

    def flush(self, timeout: float) -> bool:
        """Wait until every id put is sent, at most ``timeout`` seconds; whether it is."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._ids or self._sending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _run(self) -> None:
        pause = RESEND_AFTER[0]
        while True:
            with self._lock:
                while not self._ids:
                    self._wanted.wait()
            time.sleep(LINGER)
            with self._lock:
                ids, self._ids = self._ids, []
                self._sending = len(ids)
            unsent = self._send(ids)
            with self._lock:
                self._sending = 0
                if unsent:  # first in line for the next try, within the backlog
                    self._ids[:0] = unsent[: max(0, BACKLOG - len(self._ids))]
                self._idle.notify_all()
            if unsent:
                time.sleep(pause)
                pause = min(pause * 2, RESEND_AFTER[1])
            else:
                pause = RESEND_AFTER[0]

    def _send(self, ids: list[str]) -> list[str]:
        """Send ``ids`` in messages of :data:`BATCH`; the ids not sent."""
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            try:  # whatever goes wrong, the thread lives on and the ids are kept
                if self._producer is None:
                    self._producer = self._connect()
                task = self.celery_app.tasks[BATCH_TASK_NAME]
                task.apply_async((chunk,), producer=self._producer, retry=False)
            except Exception as exc:
                self._close()
                self._failed(chunk, len(ids) - start, exc)
                return ids[start:]
        return []

    def _connect(self) -> Any:
        conf = self.celery_app.conf
        given = conf.broker_transport_options or {}
        bounded = {"socket_timeout": PUBLISH_TIMEOUT, "socket_connect_timeout": PUBLISH_TIMEOUT}
        connection = self.celery_app.connection_for_write(
            connect_timeout=PUBLISH_TIMEOUT,
            transport_options={k: v for k, v in bounded.items() if k not in given},
        )
        return self.celery_app.amqp.Producer(connection, auto_declare=False)

    def _close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.connection.release()
            except Exception:  # it is broken already
                pass

    def _failed(self, chunk: list[str], waiting: int, exc: Exception) -> None:
        if self.flask_app is not None and signals.publish_failed.receivers:
            try:
                signals.publish_failed.send(self.flask_app, event_ids=chunk, exception=exc)
            except Exception:
                log.exception("receiver of signal 'publish-failed' failed")
        held = self._failing.due()
        if held is not None:
            more = f"; {held} more failed send(s) since the last message" if held else ""
            log.error(
                "could not send %d event(s) to the Celery broker (%s: %s); they stay pending"
                " and are sent again when it answers (the sweeper runs them if this process"
                " ends first)%s",
                waiting,
                type(exc).__name__,
                exc,
                more,
            )

    def _dropped(self, event_id: str) -> None:
        held = self._full.due()
        if held is not None:
            log.error(
                "%d event ids wait for the Celery broker in this process; %s and those after"
                " it are left pending for the sweeper (process-pending)",
                BACKLOG,
                event_id,
            )


def _after_fork() -> None:
    global _creating
    _creating = threading.Lock()
    for found in list(_publishers):
        found._reset()


def _at_exit() -> None:
    for found in list(_publishers):
        if found._thread is not None:
            found.flush(PUBLISH_TIMEOUT)


os.register_at_fork(after_in_child=_after_fork)
atexit.register(_at_exit)


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
    return float(delay)


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


@shared_task(
    bind=True,
    name=BATCH_TASK_NAME,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def process_events(self: Task, event_ids: list[str]) -> dict[str, int]:
    """Process a batch of stored events (what :func:`enqueue` sends): those not done yet,
    oldest ``created`` first, each in its own transaction. One that needs another try goes
    on as its own :func:`process_event` task, due after that task's backoff (or when a
    handler's ``Retry`` said). Returns the counts by outcome."""
    from . import recovery

    with _app_context(self.app):
        state = get_state()
        summary = recovery.process_events(state, recovery.runnable(state, event_ids))
    single = self.app.tasks[TASK_NAME]
    for result in summary.later:
        countdown = result.retry_after
        if countdown is None:
            countdown = backoff(single, 0)
        if result.outcome != BUSY:
            log.warning(
                "event %s not processed (%s); again in %.2fs",
                result.event_id,
                result.reason,
                countdown,
            )
        # As its first retry: the batch was its first attempt.
        single.apply_async((result.event_id,), countdown=countdown, retries=1)
    return summary.counts


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
    "BATCH_TASK_NAME",
    "BEAT_SCHEDULE",
    "EventNotProcessed",
    "Publisher",
    "TASK_NAME",
    "enqueue",
    "flush",
    "init_celery",
    "make_celery",
    "process_event",
    "process_events",
    "process_pending",
    "publisher",
    "reconcile",
]
