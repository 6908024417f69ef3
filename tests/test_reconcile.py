"""Reconciliation: ``fetch-missed --undelivered`` and the Celery task, against the fake
Stripe API's ``delivery_success=false`` listing."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, current_app
from flask_stripe_hooks import StripeHooks, signals
from flask_stripe_hooks.models import StripeEvent
from flask_stripe_hooks.testing import FakeStripe, build_event, create_endpoint, deliver

from support.helpers import handled, record, rows

TEST_KEY = "sk_test_stub"  # one of the keys conftest's fake Stripe API (``stub``) accepts


def config(stub: FakeStripe) -> dict[str, Any]:
    return {"STRIPE_TEST_SECRET_KEY": TEST_KEY, "STRIPE_HOOKS_API_BASE": stub.url}


def days_ago(days: float) -> int:
    return int(time.time() - days * 86400)


def test_fetch_missed_undelivered_stores_what_stripe_failed_to_deliver(
    app_factory: Any, hooks: StripeHooks, stub: FakeStripe
) -> None:
    @hooks.on("*")
    def handler(event: Any, **kwargs: Any) -> None:
        record(current_app, event.id)

    app: Flask = app_factory(**config(stub))
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    delivered = stub.add_event(build_event("customer.created", created=days_ago(1)))
    delivered["pending_webhooks"] = 0  # every delivery succeeded
    lost = stub.add_event(build_event("invoice.paid", created=days_ago(2)))
    lost["pending_webhooks"] = 1  # Stripe is still retrying it
    arrived = stub.add_event(build_event("invoice.paid", created=days_ago(1)))
    arrived["pending_webhooks"] = 1  # failed to another endpoint, stored here
    deliver(app.test_client(), endpoint, arrived)
    old = stub.add_event(build_event("invoice.paid", created=days_ago(10)))
    old["pending_webhooks"] = 2

    heard: list[dict[str, Any]] = []

    def listen(sender: Any, **kwargs: Any) -> None:
        heard.append(kwargs)

    runner = app.test_cli_runner()
    with signals.events_reconciled.connected_to(listen, sender=app):
        result = runner.invoke(args=["stripe-hooks", "fetch-missed", "--undelivered"])
    assert result.exit_code == 0, result.output
    assert "Stripe listed 2 undelivered event(s); 1 not stored here." in result.output
    assert "fetch-missed: 1 processed" in result.output
    listing = stub.calls("GET")[-1]
    assert listing.path == "/v1/events" and listing.query["delivery_success"] == "false"
    assert [event_id for event_id, _ in handled(app)] == [arrived["id"], lost["id"]]
    assert heard == [{"seen": 2, "missing": 1, "counts": {"processed": 1}, "undelivered": True}]

    # The whole 30 days Stripe keeps, as the scheduled task does.
    from flask_stripe_hooks.celery import make_celery, reconcile

    celery_app = make_celery(app)
    celery_app.conf.task_always_eager = True
    counts = reconcile.apply(kwargs={"since": "30d"}).get()
    assert counts == {"processed": 1}
    assert {e.id for e in rows(app, StripeEvent)} == {arrived["id"], lost["id"], old["id"]}
    assert reconcile.apply(kwargs={"since": "30d"}).get() == {}
