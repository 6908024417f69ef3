"""``fetch-missed --payload thin``: the thin events Stripe keeps (``GET /v2/core/events``,
served by ``FakeStripe`` in Stripe's wire format) that never arrived are stored and processed,
every page, within a ``created`` range, with the twins rule. SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask
from flask_stripe_hooks import event_types
from flask_stripe_hooks.models import StripeEvent
from flask_stripe_hooks.testing import (
    build_event,
    build_thin_event,
    build_thin_twin,
    create_endpoint,
    deliver,
)

from support.helpers import handled, record, rows

KEY = "sk_test_stub"


@pytest.fixture
def app(stub_app: Flask) -> Flask:
    return stub_app


@pytest.fixture
def thin(app: Flask, db: Any) -> Any:
    with app.app_context():
        return create_endpoint(db, payload="thin")


@pytest.fixture
def seen(app: Flask, hooks: Any) -> None:
    hooks.on("v1", "customer")(lambda event, **kw: record(app, event.id, event.type))


def cli(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=["stripe-hooks", *args])
    assert "Traceback" not in result.output
    return result


def status(app: Flask) -> dict[str, str]:
    return {e.id: e.status for e in rows(app, StripeEvent)}


def test_every_page_of_the_range_is_read_and_the_missing_are_stored(app, client, thin, stub, seen):
    now = int(time.time())
    events = [
        stub.add_thin_event(build_thin_event("v1.customer.updated", created=now - 60 * i))
        for i in range(130)  # two pages of 100
    ]
    too_old = stub.add_thin_event(build_thin_event("v1.customer.updated", created=now - 5 * 86400))
    live = stub.add_thin_event(build_thin_event("v1.customer.updated", livemode=True))
    delivered = events[3]
    assert deliver(client, thin, delivered).status_code == 200  # this one arrived

    result = cli(app, "fetch-missed", "--payload", "thin", "--since", "3d")
    assert result.exit_code == 0, result.output
    assert "Stripe listed 130 thin event(s); 129 not stored here." in result.output
    assert "fetch-missed: 129 processed" in result.output
    stored = status(app)
    assert set(stored) == {e["id"] for e in events} and set(stored.values()) == {"processed"}
    assert too_old["id"] not in stored and live["id"] not in stored
    assert len(handled(app)) == 130

    first, second = stub.calls("GET")
    assert first.path == "/v2/core/events" and first.api_key == KEY
    assert first.query["limit"] == "100" and "types" not in first.query
    since = first.query["created"]["gte"]
    assert time.strftime("%Y-%m-%dT", time.gmtime(now - 3 * 86400)) in since  # RFC 3339
    assert second.path == "/v2/core/events" and set(second.query) == {"page"}

    # What was stored is the full event: its data and changes, for the handlers.
    (row,) = rows(app, StripeEvent, StripeEvent.id == events[0]["id"])
    assert row.data["id"] == events[0]["id"] and "changes" in row.data
    assert row.endpoint_id == thin.id and row.type == "v1.customer.updated"

    again = cli(app, "fetch-missed", "--payload", "thin", "--since", "3d")
    assert "130 thin event(s); 0 not stored here." in again.output
    assert len(handled(app)) == 130


def test_a_backfilled_twin_runs_nothing_when_its_snapshot_event_ran(
    app, client, endpoint, thin, stub, seen
):
    snapshot = build_event("customer.created")
    twin = stub.add_thin_event(build_thin_twin(snapshot))
    lone = stub.add_thin_event(build_thin_twin(build_event("customer.created")))
    assert deliver(client, endpoint, snapshot).status_code == 200

    result = cli(app, "fetch-missed", "--payload", "thin")
    assert result.exit_code == 0, result.output
    assert "1 processed" in result.output and "1 twin" in result.output
    assert status(app) == {
        snapshot["id"]: "processed",
        twin["id"]: "twin",
        lone["id"]: "processed",
        lone["snapshot_event"]: "twin",  # its snapshot event, if it comes, runs nothing
    }
    assert sorted(h[0] for h in handled(app)) == sorted([snapshot["id"], lone["id"]])


def test_a_type_filter_of_at_most_20_types_is_sent_to_stripe(app, thin, stub, seen):
    dispute = stub.add_thin_event(build_thin_event("v1.charge.dispute.created"))
    stub.add_thin_event(build_thin_event("v1.charge.succeeded"))
    customer = stub.add_thin_event(build_thin_event("v1.customer.created"))
    result = cli(
        app, "fetch-missed", "--payload", "thin", "--type", "v1.charge.dispute", "--dry-run"
    )
    assert result.exit_code == 0, result.output
    (call,) = stub.calls("GET")
    assert call.query["types"] == event_types.matching("v1.charge.dispute", thin=True)
    assert "1 not stored here" in result.output and dispute["id"] in result.output
    assert "would store 1" in result.output and rows(app, StripeEvent) == []
    # A prefix of more than 20 types (Stripe's limit) is filtered here instead.
    result = cli(app, "fetch-missed", "--payload", "thin", "--type", "v1.customer", "--dry-run")
    assert "types" not in stub.calls("GET")[-1].query
    assert "Stripe listed 3 thin event(s); 1 not stored here." in result.output
    assert customer["id"] in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--undelivered"], "Stripe's v2 events API cannot tell undelivered events"),
        (["--type", "customer"], "--type 'customer' is not a thin type"),
        (["--type", "v1.custmer"], "did you mean 'v1.customer'"),
        (["--since", "31d"], "Stripe keeps events for 30 days"),
    ],
)
def test_bad_thin_fetch_missed_is_a_message(app, thin, stub, args, message):
    result = cli(app, "fetch-missed", "--payload", "thin", *args)
    assert result.exit_code == 1 and message in result.output
    assert stub.calls("GET") == [] and rows(app, StripeEvent) == []


def test_a_stripe_refusal_is_a_message(app, thin, stub):
    stub.fail_next(403, {"type": "invalid_request_error", "message": "Not allowed."})
    result = cli(app, "fetch-missed", "--payload", "thin")
    assert result.exit_code == 1 and "read access to Events (v2)" in result.output
