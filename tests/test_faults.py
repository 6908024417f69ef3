"""Faults: PostgreSQL kills the connection in the middle of processing an event.

``pg_terminate_backend`` ends the server process behind the app's connection, from
another connection, at a chosen moment: in a handler before or after it wrote, in a
handler that swallows the error, at COMMIT, and again while the failure is recorded. Each
time: no 2xx (so Stripe retries), nothing of the attempt is left in the database, and the
retry — the same captured body and signature — is processed, with the handlers' effects
exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_stripe_hooks import StripeHooks
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery
from flask_stripe_hooks.pipeline.run import process_stored
from flask_stripe_hooks.testing import build_event, create_endpoint, new_secret, sign_payload

from support.helpers import count, handled, make_app, record, reset_postgres, rows

pytestmark = pytest.mark.postgres


class Killer:
    """Ends PostgreSQL backends from a connection of its own."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.kills = 0

    def kill(self, pid: int) -> None:
        with self.engine.connect() as conn:
            # Waits (up to 5 s) until the backend is gone, so the next statement fails.
            done = conn.execute(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
            assert done.scalar() is True
        self.kills += 1
        count("fault injections")

    def kill_session(self, app: Flask) -> None:
        """The backend of the connection the app's session holds right now."""
        db = app.extensions["sqlalchemy"]
        self.kill(db.session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())

    def kill_at(self, app: Flask, event: str) -> None:
        """Kill the next connection of the app's engine at an engine event (once)."""
        with app.app_context():
            engine = app.extensions["sqlalchemy"].engine

        def listener(conn: Any, *args: Any) -> None:
            dbapi = conn.connection.dbapi_connection if event == "commit" else conn
            self.kill(dbapi.info.backend_pid)

        sa.event.listen(engine, event, listener, once=True)


@pytest.fixture
def pg_app(postgres_url: str) -> Iterator[tuple[Flask, StripeHooks, Killer]]:
    reset_postgres(postgres_url)
    hooks = StripeHooks()
    app = make_app(postgres_url, hooks)
    killer = Killer(postgres_url)
    yield app, hooks, killer
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()
    killer.engine.dispose()


def deliver_twice(
    app: Flask, hooks: StripeHooks, killer: Killer, handler: Callable[..., None]
) -> tuple[Any, Any, dict[str, Any]]:
    """Deliver one event with ``handler`` armed to fault once, then the same request again."""
    secret = new_secret()
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"], secret=secret)
    hooks.on("invoice.paid")(handler)
    event = build_event("invoice.paid")
    body, header = sign_payload(event, secret)
    client = app.test_client()
    path = f"/stripe/webhook/{endpoint.uuid}/"
    headers = {"Stripe-Signature": header, "Content-Type": "application/json"}
    first = client.post(path, data=body, headers=headers)
    # Nothing of the failed attempt is in the database: no handler row, no processed event.
    assert handled(app) == []
    assert [e.status for e in rows(app, StripeEvent) if e.status == "processed"] == []
    retry = client.post(path, data=body, headers=headers)
    return first, retry, event


def check_retry_succeeded(app: Flask, retry: Any, event: dict[str, Any]) -> None:
    assert retry.status_code == 200 and retry.text.strip() == "processed"
    assert handled(app) == [(event["id"], "written")]
    (stored,) = rows(app, StripeEvent)
    lost = 0 if stored.status == "processed" else 1
    count("events lost", lost)
    count("faulted events checked processed on retry")
    assert lost == 0
    # At most one delivery row per request; the last one is the success.
    outcomes = [d.outcome for d in rows(app, WebhookDelivery)]
    assert len(outcomes) <= 2 and outcomes[-1] == "processed"


def armed(killer: Killer, app: Flask, before: bool, swallow: bool = False) -> Callable[..., None]:
    """A handler that writes its row; on its first call the connection dies before or
    after the write."""
    calls: list[int] = []

    def handler(event: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1 and before:
            killer.kill_session(app)
        try:
            record(app, event.id, "written")
        except sa.exc.OperationalError:
            if not swallow:
                raise
        if len(calls) == 1 and not before:
            killer.kill_session(app)

    return handler


@pytest.mark.parametrize(
    "before, swallow",
    [(True, False), (False, False), (True, True)],
    ids=["killed-before-the-write", "killed-after-the-write", "handler-swallows-the-error"],
)
def test_connection_killed_in_a_handler(pg_app, before: bool, swallow: bool):
    app, hooks, killer = pg_app
    first, retry, event = deliver_twice(app, hooks, killer, armed(killer, app, before, swallow))
    assert first.status_code >= 500, first.text
    assert "Traceback" not in first.text and len(first.text) < 100
    if not swallow:
        assert first.status_code == 503 and "retry later" in first.text
    check_retry_succeeded(app, retry, event)
    assert killer.kills == 1


def test_connection_killed_at_commit(pg_app):
    """The handler ran and wrote; the connection dies as COMMIT is sent."""
    app, hooks, killer = pg_app

    def handler(event: Any, **kwargs: Any) -> None:
        record(app, event.id, "written")
        if not killer.kills:
            killer.kill_at(app, "commit")

    first, retry, event = deliver_twice(app, hooks, killer, handler)
    assert first.status_code == 503, first.text
    check_retry_succeeded(app, retry, event)
    assert killer.kills == 1


def test_connection_killed_again_while_the_failure_is_recorded(pg_app):
    """The database stays unreachable for the pipeline's second transaction too: the
    failure cannot be written, the answer is still 503, and the retry succeeds."""
    app, hooks, killer = pg_app

    def handler(event: Any, **kwargs: Any) -> None:
        if not killer.kills:
            killer.kill_at(app, "checkout")  # the fresh connection the pipeline takes next
            killer.kill_session(app)
        record(app, event.id, "written")

    first, retry, event = deliver_twice(app, hooks, killer, handler)
    assert first.status_code == 503, first.text
    check_retry_succeeded(app, retry, event)
    assert killer.kills == 2


def test_connection_killed_in_a_queue_worker(postgres_url):
    """Queue mode: the event is stored as pending; the worker's connection dies in the
    handler; the event stays unprocessed and the next attempt processes it once."""
    reset_postgres(postgres_url)
    hooks, queued = StripeHooks(), []
    app = make_app(postgres_url, hooks, STRIPE_HOOKS_EVENT_CALLBACK=queued.append)
    killer = Killer(postgres_url)
    try:
        handler = armed(killer, app, before=False)
        hooks.on("invoice.paid")(handler)
        secret = new_secret()
        with app.app_context():
            endpoint = create_endpoint(app.extensions["sqlalchemy"], secret=secret)
        event = build_event("invoice.paid")
        body, header = sign_payload(event, secret)
        response = app.test_client().post(
            f"/stripe/webhook/{endpoint.uuid}/", data=body, headers={"Stripe-Signature": header}
        )
        assert response.text.strip() == "queued" and queued == [event["id"]]
        state = app.extensions["stripe_hooks"]
        with app.app_context():
            first = process_stored(state, event["id"])
        assert not first.ok and first.outcome == "unavailable"
        assert handled(app) == []
        assert rows(app, StripeEvent)[0].status in ("pending", "failed")
        with app.app_context():
            second = process_stored(state, event["id"])
        assert second.ok and second.outcome == "processed"
        assert handled(app) == [(event["id"], "written")]
        (stored,) = rows(app, StripeEvent)
        count("events lost", 0 if stored.status == "processed" else 1)
        count("faulted events checked processed on retry")
        assert stored.status == "processed"
    finally:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()
        killer.engine.dispose()
