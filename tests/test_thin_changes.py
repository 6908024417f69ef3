"""What changed on the object, asked one way of both kinds of event: ``event.changes``
(``{"before", "after"}``) and ``event.previous_attributes``, on a snapshot event (from its
``previous_attributes``) and on a thin event (its ``changes``, fetched from
``GET /v2/core/events/{id}`` of ``FakeStripe``, or stored by ``fetch-missed``). SQLite and
PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask_stripe_hooks.testing import (
    build_event,
    build_thin_event,
    build_thin_twin,
    create_endpoint,
    deliver,
)

KEY = "sk_test_stub"
CHANGES = {"before": {"email": "old@example.com"}, "after": {"email": "new@example.com"}}


@pytest.fixture
def app(stub_app: Flask) -> Flask:
    return stub_app


@pytest.fixture
def asked(app: Flask, hooks: Any) -> list[tuple[str, Any, Any]]:
    """``(event id, event.changes, event.previous_attributes)`` of each event handled."""
    got: list[tuple[str, Any, Any]] = []

    @hooks.on("customer.updated", "v1.customer.updated", "v1.customer.created")
    def what_changed(event: Any, **kwargs: Any) -> None:
        got.append((event.id, event.changes, event.previous_attributes))

    return got


def test_the_same_question_of_a_snapshot_event_and_its_thin_twin(app, db, stub, asked):
    with app.app_context():
        snapshot_endpoint, thin = create_endpoint(db), create_endpoint(db, payload="thin")
    client = app.test_client()
    snapshot = build_event(
        "customer.updated",
        {"email": "new@example.com", "name": "Ada"},
        previous_attributes={"email": "old@example.com"},
    )
    assert deliver(client, snapshot_endpoint, snapshot).status_code == 200
    # A thin event that is no twin: its changes come from the full event, fetched once.
    thin_event = build_thin_twin(snapshot, snapshot_event=None)
    stub.add_thin_event(thin_event)["changes"] = CHANGES
    assert deliver(client, thin, thin_event).status_code == 200

    (s_id, s_changes, s_before), (t_id, t_changes, t_before) = asked
    assert (s_id, t_id) == (snapshot["id"], thin_event["id"])
    assert s_changes == t_changes == CHANGES
    assert s_before == t_before == {"email": "old@example.com"}
    (fetch,) = stub.calls("GET")
    assert fetch.path == f"/v2/core/events/{thin_event['id']}"  # once for both questions


def test_no_change_is_none(app, db, stub, asked):
    with app.app_context():
        snapshot_endpoint, thin = create_endpoint(db), create_endpoint(db, payload="thin")
    client = app.test_client()
    created = build_thin_event("v1.customer.created")
    stub.add_thin_event(created)  # Stripe gives no changes for a creation
    assert deliver(client, thin, created).status_code == 200
    updated = build_event("customer.updated")  # no previous_attributes
    assert deliver(client, snapshot_endpoint, updated).status_code == 200
    assert [(c, b) for _, c, b in asked] == [(None, {}), (None, {})]


def test_fetch_missed_stores_the_changes_with_the_event(app, db, stub, asked):
    with app.app_context():
        create_endpoint(db, payload="thin")
    missed = build_thin_event("v1.customer.updated")
    stub.add_thin_event(missed)["changes"] = CHANGES
    result = app.test_cli_runner().invoke(
        args=["stripe-hooks", "fetch-missed", "--payload", "thin"]
    )
    assert result.exit_code == 0, result.output
    assert asked == [(missed["id"], CHANGES, CHANGES["before"])]
    assert [c.path for c in stub.calls("GET")] == ["/v2/core/events"]  # no fetch: it was stored


def test_the_worked_example_runs_once_per_business_event(app, db, hooks, stub):
    """docs/thin-events.md's handler for both kinds: fetch_object() and previous_attributes."""
    statuses: list[tuple[str, str]] = []

    @hooks.on("customer.subscription.updated", "v1.customer.subscription.updated")
    def subscription_updated(event: Any, **kwargs: Any) -> None:
        if "status" in event.previous_attributes:
            sub = event.fetch_object()  # the current subscription, whichever twin came first
            statuses.append((sub.id, sub.status))

    with app.app_context():
        snapshot_endpoint, thin = create_endpoint(db), create_endpoint(db, payload="thin")
    client = app.test_client()
    for first in ("snapshot", "thin"):
        snapshot = build_event(
            "customer.subscription.updated",
            {"status": "active"},
            previous_attributes={"status": "trialing"},
        )
        sub_id = snapshot["data"]["object"]["id"]
        stub.add_object(
            f"/v1/subscriptions/{sub_id}",
            {"id": sub_id, "object": "subscription", "status": "past_due"},
        )
        twin = build_thin_twin(snapshot)
        stub.add_thin_event(twin)["changes"] = {
            "before": {"status": "trialing"},
            "after": {"status": "active"},
        }
        order = [(snapshot_endpoint, snapshot), (thin, twin)]
        for endpoint, event in order if first == "snapshot" else order[::-1]:
            assert deliver(client, endpoint, event).status_code == 200
        assert statuses[-1] == (sub_id, "past_due")  # as it is now, from Stripe
    assert len(statuses) == 2
