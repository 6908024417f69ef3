"""Concurrent deliveries of one event id from several processes, on a real PostgreSQL."""

from __future__ import annotations

import pytest
from flask_stripe_hooks import StripeHooks
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery
from flask_stripe_hooks.testing import build_event, create_endpoint, sign_payload

from support.concurrent_delivery import Deliverers
from support.helpers import handled, make_app, reset_postgres, rows

PROCESSES = 6


def deliver_concurrently(app, url: str, fail: bool) -> list[str]:
    """One event, delivered by every process at the same moment."""
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    body, header = sign_payload(
        build_event("customer.subscription.updated"), endpoint.secrets[0]["secret"]
    )
    with Deliverers(url, "failing" if fail else "slow", PROCESSES) as deliverers:
        return deliverers.round([(endpoint.uuid, body, header)] * PROCESSES)


@pytest.fixture
def pg_url(postgres_url):
    reset_postgres(postgres_url)
    return postgres_url


@pytest.fixture
def app(pg_url):
    app = make_app(pg_url, StripeHooks())
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def test_concurrent_duplicates_apply_effects_exactly_once(app, pg_url):
    outputs = deliver_concurrently(app, pg_url, fail=False)
    assert sorted(outputs) == ["200 duplicate"] * (PROCESSES - 1) + ["200 processed"]
    assert len(handled(app)) == 1
    (event,) = rows(app, StripeEvent)
    assert event.status == "processed" and event.attempts == 1
    outcomes = sorted(d.outcome for d in rows(app, WebhookDelivery))
    assert outcomes == ["duplicate"] * (PROCESSES - 1) + ["processed"]


def test_concurrent_failing_deliveries_leave_no_effect(app, pg_url):
    outputs = deliver_concurrently(app, pg_url, fail=True)
    assert outputs == ["500 handler failed"] * PROCESSES  # each attempt ran and rolled back
    assert handled(app) == []
    (event,) = rows(app, StripeEvent)
    assert event.status == "failed" and event.attempts == PROCESSES
    assert len(rows(app, WebhookDelivery)) == PROCESSES
