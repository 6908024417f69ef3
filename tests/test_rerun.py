"""Re-runs tell the truth: a re-run of a dead, failed or processed event records its own
outcome, error, traceback and attempt; a dead event that fails again stays dead with the new
error and does not send ``event-dead`` again. From the CLI, the admin and the queue (a real
Celery worker), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_stripe_hooks import StripeHooks, signals
from flask_stripe_hooks.models import StripeEvent
from flask_stripe_hooks.testing import build_event, create_endpoint, deliver

from support.helpers import handled, on_postgresql, record, rows

ADMIN = "/stripe-hooks/admin"


class Handler:
    """The ``invoice.paid`` handler: raises ``error`` when set, else records the event."""

    def __init__(self, app: Flask, hooks: StripeHooks) -> None:
        self.error: Exception | None = None

        @hooks.on("invoice.paid")
        def handler(event: Any, **kwargs: Any) -> None:
            if self.error is not None:
                raise self.error
            record(app, event.id)


@pytest.fixture
def died() -> Iterator[list[str]]:
    """The ids ``event-dead`` was sent for."""
    sent: list[str] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        sent.append(kwargs["event"].id)

    signals.event_dead.connect(receiver, weak=False)
    try:
        yield sent
    finally:
        signals.event_dead.disconnect(receiver)


def stored(app: Flask, event_id: str) -> StripeEvent:
    (event,) = rows(app, StripeEvent, StripeEvent.id == event_id)
    return event


def dead_event(app: Flask, handler: Handler) -> str:
    """Deliver an event whose handler fails: dead at once (STRIPE_HOOKS_MAX_ATTEMPTS=1)."""
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    item = build_event("invoice.paid")
    handler.error = KeyError("first failure")
    response = deliver(app.test_client(), endpoint, item)
    assert (response.status_code, response.text) == (200, "dead: failed too often\n")
    event = stored(app, item["id"])
    assert (event.status, event.attempts, event.last_error) == (
        "dead",
        1,
        "KeyError: 'first failure'",
    )
    return str(item["id"])


def test_cli_rerun_of_a_dead_event_records_the_new_failure(
    app_factory: Any, hooks: StripeHooks, died: list[str]
) -> None:
    app = app_factory(STRIPE_HOOKS_MAX_ATTEMPTS=1)
    handler = Handler(app, hooks)
    event_id = dead_event(app, handler)
    assert died == [event_id]
    runner = app.test_cli_runner()

    handler.error = ValueError("second failure")
    result = runner.invoke(args=["stripe-hooks", "reprocess", event_id])
    assert result.exit_code == 1
    assert f"{event_id}: dead: failed too often" in result.output
    assert "reprocess: 1 dead" in result.output
    event = stored(app, event_id)
    assert (event.status, event.attempts) == ("dead", 2)
    assert event.last_error == "ValueError: second failure"
    assert "ValueError: second failure" in event.last_traceback
    assert "first failure" not in event.last_traceback
    assert died == [event_id]  # it died once

    # --failed takes dead events too; Retry on a dead event keeps it dead, with its reason.
    from flask_stripe_hooks import Retry

    handler.error = Retry("still waiting")
    result = runner.invoke(args=["stripe-hooks", "reprocess", "--failed"])
    assert "dead: retried too often" in result.output
    event = stored(app, event_id)
    assert (event.status, event.attempts, event.last_error) == ("dead", 3, "still waiting")
    assert (event.last_traceback, event.next_attempt_at) == (None, None)
    assert died == [event_id]

    handler.error = None
    result = runner.invoke(args=["stripe-hooks", "reprocess", event_id])
    assert result.exit_code == 0, result.output
    event = stored(app, event_id)
    assert (event.status, event.attempts, event.last_error, event.last_traceback) == (
        "processed",
        4,
        None,
        None,
    )
    assert handled(app) == [(event_id, "")]


def test_cli_rerun_of_a_failed_or_processed_event(app_factory: Any, hooks: StripeHooks) -> None:
    app = app_factory(STRIPE_HOOKS_MAX_ATTEMPTS=5)
    handler = Handler(app, hooks)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    client = app.test_client()
    failed, done = build_event("invoice.paid"), build_event("invoice.paid")
    handler.error = KeyError("first failure")
    assert deliver(client, endpoint, failed).status_code == 500
    handler.error = None
    assert deliver(client, endpoint, done).status_code == 200
    runner = app.test_cli_runner()

    handler.error = ValueError("again")
    result = runner.invoke(args=["stripe-hooks", "reprocess", failed["id"], done["id"]])
    assert result.exit_code == 1
    assert "reprocess: 2 failed" in result.output
    for item, attempts in ((failed, 2), (done, 2)):
        event = stored(app, item["id"])
        assert (event.status, event.attempts, event.last_error) == (
            "failed",
            attempts,
            "ValueError: again",
        )
        assert "ValueError: again" in event.last_traceback
    assert handled(app) == [(done["id"], "")]  # the failed re-run's writes rolled back


def test_admin_process_again_shows_the_new_failure(
    app_factory: Any, hooks: StripeHooks, died: list[str]
) -> None:
    from support.admin_support import allow

    app = app_factory(STRIPE_HOOKS_MAX_ATTEMPTS=1, STRIPE_HOOKS_ADMIN_AUTH=allow)
    handler = Handler(app, hooks)
    event_id = dead_event(app, handler)
    client = app.test_client()
    page = client.get(f"{ADMIN}/events/{event_id}").text
    assert "KeyError: &#39;first failure&#39;" in page
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)

    handler.error = ValueError("second failure")
    response = client.post(
        f"{ADMIN}/events/{event_id}/process", data={"csrf_token": token}, follow_redirects=True
    )
    text = response.text
    assert f"Event {event_id} failed again (dead: failed too often)." in text
    last_run = text.split("Last failed run", 1)[1].split("<h2", 1)[0]  # the deliveries follow
    assert "Attempt 2 failed (the event is dead now)" in last_run
    assert "ValueError: second failure" in last_run and "first failure" not in last_run
    assert died == [event_id]


@on_postgresql
def test_queue_rerun_of_a_dead_event_through_a_celery_worker(
    database_url: str, redis_url: str, tmp_path: Path, processes: list[Any]
) -> None:
    from support import queue_app
    from support.queue_support import app_env, queue_app_in, start_worker, wait_until

    marks = tmp_path / "marks"
    marks.mkdir()
    env = app_env(database_url, marks, REDIS_URL=redis_url, MAX_ATTEMPTS=1, CELERY_MAX_RETRIES=0)
    app = queue_app_in(env)
    with app.app_context():
        endpoint = create_endpoint(queue_app.db)
    item = build_event("invoice.paid", {"metadata": {"fail_always": True}})
    assert deliver(app.test_client(), endpoint, item).text == "queued\n"
    processes.append(start_worker(env, tmp_path / "worker.log", concurrency=1))

    def event() -> StripeEvent:
        return stored(app, item["id"])

    wait_until(lambda: event().status == "dead", 60, "the worker to run the event")
    assert event().last_error == f"RuntimeError: {item['id']} always fails"
    assert (marks / "dead.log").read_text().split() == [item["id"]]

    (marks / f"error-{item['id']}").write_text("the second failure")
    result = app.test_cli_runner().invoke(
        args=["stripe-hooks", "reprocess", "--enqueue", item["id"]]
    )
    assert result.exit_code == 0, result.output
    assert "reprocess: 1 queued" in result.output
    wait_until(lambda: event().attempts == 2, 60, "the worker to run it again")
    found = event()
    assert (found.status, found.last_error) == ("dead", "RuntimeError: the second failure")
    assert "the second failure" in found.last_traceback
    assert (marks / "dead.log").read_text().split() == [item["id"]]  # sent once, by the first run
    with app.app_context():
        queue_app.db.engine.dispose()
