"""A stripe-python ``StripeEventNotificationHandler`` handed to the extension
(``hooks.use_notification_handler``) gets this library's verification, storage, exactly-once
gate and twins rule around its callbacks. Its fetches reach ``FakeStripe`` through its own
client. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
import stripe
from flask import Flask
from flask_stripe_hooks.models import StripeEvent
from flask_stripe_hooks.testing import (
    FakeStripe,
    build_event,
    build_thin_event,
    build_thin_twin,
    create_endpoint,
    deliver,
    new_secret,
)

from support.helpers import handled, record, rows

KEY = "sk_test_stub"


@pytest.fixture
def app(stub_app: Flask) -> Flask:
    return stub_app


@pytest.fixture
def unhandled() -> list[tuple[str, bool]]:
    return []


@pytest.fixture
def handler(app: Flask, hooks: Any, stub: FakeStripe, unhandled: list[Any]) -> Any:
    """A handler as its stripe-python docs build one, handed to the extension."""
    client = stripe.StripeClient(KEY, base_addresses={"api": stub.url})

    def fallback(notification: Any, client: Any, details: Any) -> None:
        unhandled.append((notification.type, details.is_known_event_type))

    handler = stripe.StripeEventNotificationHandler(client, new_secret(), fallback)
    handler.fail = False  # type: ignore[attr-defined]

    @handler.on_v1_customer_created
    def created(notification: Any, client: Any) -> None:
        customer = notification.fetch_related_object()
        record(app, notification.id, customer.email)
        if handler.fail:  # type: ignore[attr-defined]
            raise RuntimeError("CRM down")

    assert hooks.use_notification_handler(handler) is handler
    return handler


def customer(stub: FakeStripe, notification: dict[str, Any]) -> None:
    """The customer the notification is about, in the account of its context (as on Stripe,
    only requests acting in that account see it)."""
    related = notification["related_object"]
    obj = {"id": related["id"], "object": "customer", "email": "a@b.c"}
    stub.add_object(related["url"], obj, account=notification.get("context") or "")


def test_callbacks_run_once_per_thin_event(app, db, handler, stub, unhandled):
    with app.app_context():
        thin = create_endpoint(db, payload="thin")
    client = app.test_client()
    notification = build_thin_event("v1.customer.created", context="acct_123")
    customer(stub, notification)
    assert deliver(client, thin, notification).text.strip() == "processed"
    assert deliver(client, thin, notification).text.strip() == "duplicate"
    assert handled(app) == [(notification["id"], "a@b.c")]
    (fetch,) = stub.calls("GET")  # through the handler's client, in the event's context
    assert fetch.api_key == KEY and fetch.headers["Stripe-Context"] == "acct_123"

    other = build_thin_event("v1.invoice.paid")  # no callback: the fallback
    assert deliver(client, thin, other).status_code == 200
    assert unhandled == [("v1.invoice.paid", True)]


def test_a_failing_callback_rolls_back_and_stripe_retries(app, db, handler, stub):
    with app.app_context():
        thin = create_endpoint(db, payload="thin")
    client = app.test_client()
    notification = build_thin_event("v1.customer.created")
    customer(stub, notification)
    handler.fail = True
    assert deliver(client, thin, notification).status_code == 500
    assert handled(app) == []
    (stored,) = rows(app, StripeEvent)
    assert stored.status == "failed" and "CRM down" in stored.last_error
    handler.fail = False
    assert deliver(client, thin, notification).status_code == 200
    assert handled(app) == [(notification["id"], "a@b.c")]


def test_snapshot_events_and_twins_are_not_its_business(app, db, handler, stub, unhandled):
    with app.app_context():
        snapshot_endpoint, thin = create_endpoint(db), create_endpoint(db, payload="thin")
    client = app.test_client()
    event = build_event("customer.created")
    assert deliver(client, snapshot_endpoint, event).status_code == 200
    twin = build_thin_twin(event)
    assert deliver(client, thin, twin).text.strip().startswith("twin of")
    assert handled(app) == [] and unhandled == [] and stub.requests == []


def test_what_cannot_be_handed_over_is_refused(hooks, stub):
    client = stripe.StripeClient(KEY, base_addresses={"api": stub.url})
    async_handler = stripe.AsyncStripeEventNotificationHandler(
        client, new_secret(), lambda *a: None
    )
    with pytest.raises(TypeError, match="async notification handler cannot run"):
        hooks.use_notification_handler(async_handler)
    with pytest.raises(TypeError, match="is not a stripe-python StripeEventNotificationHandler"):
        hooks.use_notification_handler(object())
