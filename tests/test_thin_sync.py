"""``sync-endpoints`` reads v2 event destinations of type webhook that send thin events (from
``FakeStripe``, in Stripe's wire format) and registers or updates thin endpoints, as it does
v1 webhook endpoints. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
import stripe
from flask import Flask
from flask_stripe_hooks.models import WebhookEndpoint
from flask_stripe_hooks.testing import (
    FakeStripe,
    build_thin_event,
    create_endpoint,
    deliver,
    new_secret,
)

from support.helpers import rows

KEY = "sk_test_stub"
METER = "v1.billing.meter.no_meter_found"


@pytest.fixture
def app(stub_app: Flask) -> Flask:
    return stub_app


def dashboard(stub: FakeStripe, **body: Any) -> dict[str, Any]:
    """An event destination made elsewhere (the Dashboard), through stripe-python."""
    client = stripe.StripeClient(KEY, base_addresses={"api": stub.url})
    params = {
        "name": "made in the Dashboard",
        "type": "webhook_endpoint",
        "event_payload": "thin",
        "enabled_events": [METER],
        "webhook_endpoint": {"url": "https://shop.example.com/hooks/thin"},
        **body,
    }
    return client.v2.core.event_destinations.create(params).to_dict()  # type: ignore[arg-type]


def cli(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=["stripe-hooks", *args])
    assert "Traceback" not in result.output
    return result


def by_stripe_id(app: Flask) -> dict[str, WebhookEndpoint]:
    return {e.stripe_id: e for e in rows(app, WebhookEndpoint)}


def test_sync_imports_and_updates_thin_destinations(app, client, db, stub):
    foreign = dashboard(stub, description="usage alerts", events_from=["@accounts"])
    dashboard(stub, event_payload="snapshot", enabled_events=["customer.created"])  # not thin
    with app.app_context():
        known = create_endpoint(db, payload="thin", stripe_id=dashboard(stub)["id"])
    stub.destinations[known.stripe_id]["enabled_events"] = [METER, "v1.billing.meter.created"]
    stub.requests.clear()

    result = cli(app, "sync-endpoints")
    assert result.exit_code == 0, result.output
    assert "1 updated, 1 imported, 0 unchanged." in result.output
    assert f"Imported thin event destination {foreign['id']}" in result.output
    v1, v2 = stub.calls()
    assert v1.path == "/v1/webhook_endpoints"
    assert (v2.method, v2.path) == ("GET", "/v2/core/event_destinations")
    assert v2.query["include"] == ["webhook_endpoint.url"] and v2.api_key == KEY

    found = by_stripe_id(app)
    assert len(found) == 2  # the snapshot destination is not a thin endpoint
    imported = found[foreign["id"]]
    assert (imported.payload, imported.status, imported.secrets) == ("thin", "disabled", [])
    assert imported.url == "https://shop.example.com/hooks/thin"
    assert imported.enabled_events == [METER] and imported.connect
    assert imported.description == "usage alerts" and imported.api_version == ""
    assert found[known.stripe_id].enabled_events == [METER, "v1.billing.meter.created"]

    # As for a v1 endpoint: a secret, then enabled, then it receives thin events.
    secret = new_secret()
    assert cli(app, "set-secret", str(imported.uuid), secret).exit_code == 0
    assert cli(app, "update-endpoint", str(imported.uuid), "--enable").exit_code == 0
    assert stub.destinations[foreign["id"]]["status"] == "enabled"
    response = deliver(client, str(imported.uuid), build_thin_event(METER), secret=secret)
    assert response.status_code == 200, response.text

    assert "0 updated, 0 imported, 2 unchanged." in cli(app, "sync-endpoints").output
    stub.destinations[foreign["id"]]["status"] = "disabled"  # disabled in the Dashboard
    del stub.destinations[known.stripe_id]
    result = cli(app, "sync-endpoints")
    assert "1 updated, 0 imported, 0 unchanged, 1 missing on Stripe." in result.output
    assert by_stripe_id(app)[foreign["id"]].status == "disabled"


def test_sync_links_a_registered_thin_endpoint_by_its_uuid(app, stub):
    result = cli(app, "register-endpoint", "--secret", new_secret(), "--payload", "thin")
    assert result.exit_code == 0, result.output
    (endpoint,) = rows(app, WebhookEndpoint)
    remote = dashboard(stub, metadata={"flask_stripe_hooks_uuid": str(endpoint.uuid)})
    result = cli(app, "sync-endpoints")
    assert "1 updated, 0 imported, 0 unchanged." in result.output
    (linked,) = rows(app, WebhookEndpoint)
    assert (linked.uuid, linked.stripe_id, linked.status) == (
        endpoint.uuid,
        remote["id"],
        "enabled",
    )


def test_many_destinations_are_read_page_by_page(app, stub):
    model = dashboard(stub)
    for n in range(120):  # more than a page of 100
        copy = {**stub.destinations[model["id"]], "id": f"ed_test_{n:04d}"}
        stub.destinations[copy["id"]] = copy
        stub.destination_urls[copy["id"]] = f"https://shop.example.com/hooks/{n}"
    stub.requests.clear()
    result = cli(app, "sync-endpoints")
    assert "0 updated, 121 imported, 0 unchanged." in result.output
    first, second = stub.calls()[1:]
    assert first.query["limit"] == "100" and set(second.query) == {"page"}
    assert by_stripe_id(app)["ed_test_0042"].url == "https://shop.example.com/hooks/42"
