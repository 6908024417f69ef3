"""``Retry`` ("not yet"), ``Ignore`` ("never mind") and dead letters, in a request and in queue
mode, on SQLite and PostgreSQL; one run through a real Celery worker and Redis."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask_stripe_hooks import Ignore, Retry, StripeHooks, signals
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery
from flask_stripe_hooks.testing import build_event, create_endpoint, deliver
from flask_stripe_hooks.utils import utcnow

from support.helpers import handled, on_postgresql, record, rows

ZERO = timedelta(0)


@pytest.fixture
def behaviour(hooks: StripeHooks, app: Any) -> list[Exception | None]:
    """What the ``invoice.paid`` handler does on each call: raise the next item (``None``:
    succeed). It writes a ``handled`` row first, so a rollback shows."""
    plan: list[Exception | None] = []

    @hooks.on("invoice.paid")
    def handler(event: Any, **kwargs: Any) -> None:
        record(app, event.id)
        outcome = plan.pop(0) if plan else None
        if outcome is not None:
            raise outcome

    return plan


def stored(app: Any) -> StripeEvent:
    (event,) = rows(app, StripeEvent)
    return event


def test_retry_in_a_request_is_503_with_retry_after(app, client, endpoint, behaviour):
    behaviour.append(Retry("the customer is not stored yet", after="30s"))
    item = build_event("invoice.paid")
    response = deliver(client, endpoint, item)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert response.text == "the customer is not stored yet\n"
    event = stored(app)
    assert (event.status, event.attempts) == ("retrying", 1)
    assert event.last_error == "the customer is not stored yet"
    due = event.next_attempt_at.replace(tzinfo=event.next_attempt_at.tzinfo or utcnow().tzinfo)
    assert timedelta(seconds=25) < due - utcnow() <= timedelta(seconds=30)
    assert handled(app) == []  # the handler's write rolled back

    response = deliver(client, endpoint, item)  # Stripe's retry: now it can be handled
    assert (response.status_code, response.text) == (200, "processed\n")
    event = stored(app)
    assert (event.status, event.attempts, event.next_attempt_at) == ("processed", 2, None)
    assert handled(app) == [(item["id"], "")]
    assert [d.outcome for d in rows(app, WebhookDelivery)] == ["retrying", "processed"]


def test_retries_back_off_and_are_capped(app_factory, hooks):
    app = app_factory(STRIPE_HOOKS_RETRY_MAX="100s")
    waits = []

    @hooks.on("invoice.paid")
    def handler(event: Any, **kwargs: Any) -> None:
        raise Retry(after="30s")

    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    client = app.test_client()
    item = build_event("invoice.paid")
    for _ in range(4):
        waits.append(int(deliver(client, endpoint, item).headers["Retry-After"]))
    assert waits == [30, 60, 100, 100]


def test_ignore_is_200_recorded_and_final(app, client, endpoint, behaviour):
    reasons = []
    signals.event_ignored.connect(lambda sender, **kw: reasons.append(kw["reason"]), weak=False)
    try:
        behaviour.append(Ignore("a test-clock customer"))
        item = build_event("invoice.paid")
        response = deliver(client, endpoint, item)
        assert (response.status_code, response.text) == (200, "a test-clock customer\n")
        event = stored(app)
        assert (event.status, event.last_error) == ("ignored", "a test-clock customer")
        assert handled(app) == []
        # Not run again: a redelivery is a duplicate.
        response = deliver(client, endpoint, item)
        assert (response.status_code, response.text) == (200, "duplicate\n")
        assert handled(app) == [] and behaviour == []
        assert reasons == ["a test-clock customer"]
    finally:
        signals.event_ignored.receivers.clear()


def test_dead_after_max_attempts_then_reprocessed_once_fixed(app_factory, hooks):
    app = app_factory(STRIPE_HOOKS_MAX_ATTEMPTS=3)
    broken, dead = [True], []
    signals.event_dead.connect(lambda sender, **kw: dead.append(kw["event"].id), weak=False)

    @hooks.on("invoice.paid")
    def handler(event: Any, **kwargs: Any) -> None:
        record(app, event.id)
        if broken[0]:
            raise RuntimeError("the mail server is down")

    try:
        with app.app_context():
            endpoint = create_endpoint(app.extensions["sqlalchemy"])
        client = app.test_client()
        item = build_event("invoice.paid")
        answers = [deliver(client, endpoint, item) for _ in range(3)]
        assert [r.status_code for r in answers] == [500, 500, 200]
        assert answers[2].text == "dead: failed too often\n"
        event = stored(app)
        assert (event.status, event.attempts) == ("dead", 3)
        assert event.last_error == "RuntimeError: the mail server is down"
        assert dead == [item["id"]]
        # Stripe's later deliveries run nothing.
        assert deliver(client, endpoint, item).text == "duplicate\n"
        assert event.attempts == stored(app).attempts

        runner = app.test_cli_runner()
        listing = runner.invoke(args=["stripe-hooks", "events", "--status", "dead"])
        assert item["id"] in listing.output and "dead" in listing.output
        broken[0] = False
        result = runner.invoke(args=["stripe-hooks", "reprocess", "--failed"])
        assert result.exit_code == 0, result.output
        assert "1 processed" in result.output
        assert stored(app).status == "processed"
        assert handled(app) == [(item["id"], "")]
    finally:
        signals.event_dead.receivers.clear()


def test_retry_also_counts_toward_dead(app_factory, hooks):
    app = app_factory(STRIPE_HOOKS_MAX_ATTEMPTS=2)

    @hooks.on("invoice.paid")
    def handler(event: Any, **kwargs: Any) -> None:
        raise Retry("still not there")

    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    client = app.test_client()
    item = build_event("invoice.paid")
    assert deliver(client, endpoint, item).status_code == 503
    response = deliver(client, endpoint, item)
    assert (response.status_code, response.text) == (200, "dead: retried too often\n")
    assert (stored(app).status, stored(app).next_attempt_at) == ("dead", None)


def test_queue_mode_retry_is_due_later_and_swept(app_factory, hooks):
    """Without Celery: the worker's entry point says when the event is due, and
    ``process-pending`` runs retrying events only once they are."""
    queued: list[str] = []
    app = app_factory(STRIPE_HOOKS_EVENT_CALLBACK=queued.append)
    plan: list[Any] = [Retry(after=1), Ignore("a duplicate customer")]

    @hooks.on("invoice.paid")
    def handler(event: Any, **kwargs: Any) -> None:
        raise plan.pop(0)

    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    item = build_event("invoice.paid")
    assert deliver(app.test_client(), endpoint, item).text == "queued\n"
    with app.app_context():
        result = hooks.process_stored(item["id"])
    assert (result.outcome, result.retry_after, result.ok) == ("retrying", 1.0, False)
    assert stored(app).status == "retrying"

    runner = app.test_cli_runner()
    early = runner.invoke(args=["stripe-hooks", "process-pending", "--older-than", "0"])
    assert "nothing to do" in early.output and plan  # not due yet: the handler did not run
    listing = runner.invoke(args=["stripe-hooks", "events", "--status", "retrying"])
    assert "retrying, due" in listing.output
    time.sleep(1.1)
    due = runner.invoke(args=["stripe-hooks", "process-pending", "--older-than", "0"])
    assert due.exit_code == 0, due.output
    assert "1 ignored" in due.output and plan == []
    assert (stored(app).status, stored(app).last_error) == ("ignored", "a duplicate customer")


@on_postgresql
def test_celery_requeues_a_retry(
    database_url: str, redis_url: str, tmp_path: Path, processes: list[Any]
) -> None:
    from support import queue_app
    from support.queue_support import app_env, queue_app_in, start_worker, wait_until

    marks = tmp_path / "marks"
    marks.mkdir()
    env = app_env(database_url, marks, REDIS_URL=redis_url)
    app = queue_app_in(env)
    with app.app_context():
        endpoint = create_endpoint(queue_app.db)
    client = app.test_client()
    later = build_event("customer.created", {"metadata": {"retry_once": True}})
    never = build_event("customer.created", {"metadata": {"ignore": "not ours"}})
    for item in (later, never):
        assert deliver(client, endpoint, item).text == "queued\n"
    processes.append(start_worker(env, tmp_path / "worker.log"))

    def done() -> bool:
        found = {e.id: e.status for e in rows(app, StripeEvent)}
        return found == {later["id"]: "processed", never["id"]: "ignored"}

    wait_until(done, 60, "the worker to retry one event and ignore the other")
    found = {e.id: (e.status, e.attempts) for e in rows(app, StripeEvent)}
    assert found == {later["id"]: ("processed", 2), never["id"]: ("ignored", 1)}
    assert [event_id for event_id, _ in handled(app)] == [later["id"]]
    with app.app_context():
        queue_app.db.engine.dispose()


def test_admin_shows_retrying_ignored_and_dead(app_factory, hooks):
    from support.admin_support import allow

    app = app_factory(STRIPE_HOOKS_MAX_ATTEMPTS=2, STRIPE_HOOKS_ADMIN_AUTH=allow)
    plan: list[Exception] = [
        Retry("parent not stored", after="2m"),
        Ignore("not ours"),
        RuntimeError("boom"),
        RuntimeError("boom again"),
    ]

    @hooks.on("invoice.paid")
    def handler(event: Any, **kwargs: Any) -> None:
        raise plan.pop(0)

    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    client = app.test_client()
    later, never, broken = (build_event("invoice.paid") for _ in range(3))
    codes = [deliver(client, endpoint, item).status_code for item in (later, never, broken)]
    assert codes == [503, 200, 500]
    assert deliver(client, endpoint, broken).status_code == 200  # the second failure: dead
    statuses = {e.id: e.status for e in rows(app, StripeEvent)}
    assert statuses == {later["id"]: "retrying", never["id"]: "ignored", broken["id"]: "dead"}

    page = client.get("/stripe-hooks/admin/events/").text
    assert "Retrying: <strong>1</strong>" in page and "Dead: <strong>1</strong>" in page
    retrying = client.get(f"/stripe-hooks/admin/events/{later['id']}").text
    assert "Not yet" in retrying and "parent not stored" in retrying and "Due " in retrying
    ignored = client.get(f"/stripe-hooks/admin/events/{never['id']}").text
    assert "Ignored" in ignored and "not ours" in ignored
    dead = client.get(f"/stripe-hooks/admin/events/{broken['id']}").text
    assert "RuntimeError: boom again" in dead and "Traceback" in dead
