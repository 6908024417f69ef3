"""FakeStripe as users meet it: stripe-python pointed at it, Stripe's answers and errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from flask_stripe_hooks.testing import FakeStripe, build_event

from support.helpers import fetch_json


@pytest.fixture(scope="module")
def server() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeStripe) -> FakeStripe:
    server.reset()
    return server


def client(fake: FakeStripe, key: str = "sk_test_fake") -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": fake.url})


def raw(fake: FakeStripe, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    return fetch_json(fake.url + path, headers=headers)


def test_webhook_endpoint_lifecycle(fake: FakeStripe) -> None:
    api = client(fake)
    created = api.v1.webhook_endpoints.create(
        {"url": "https://shop.example/hook", "enabled_events": ["customer.created"]}
    )
    assert created.secret.startswith("whsec_")
    assert fake.secrets[created.id] == created.secret
    fetched = api.v1.webhook_endpoints.retrieve(created.id)
    assert "secret" not in fetched  # shown once, on create
    assert fetched.enabled_events == ["customer.created"]
    updated = api.v1.webhook_endpoints.update(created.id, {"disabled": True})
    assert updated.status == "disabled"
    assert [e.id for e in api.v1.webhook_endpoints.list().data] == [created.id]
    assert api.v1.webhook_endpoints.delete(created.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError, match="No such webhook endpoint") as exc:
        api.v1.webhook_endpoints.retrieve(created.id)
    assert exc.value.http_status == 404


def test_live_and_test_mode_are_apart(fake: FakeStripe) -> None:
    made = client(fake, "sk_live_fake").v1.webhook_endpoints.create(
        {"url": "https://shop.example/hook", "enabled_events": ["*"]}
    )
    assert made.livemode is True
    assert client(fake).v1.webhook_endpoints.list().data == []


def test_errors_are_stripes(fake: FakeStripe) -> None:
    status, body = raw(fake, "/v1/webhook_endpoints")
    assert status == 401
    assert body["error"]["type"] == "invalid_request_error"
    assert "did not provide an API key" in body["error"]["message"]
    status, body = raw(fake, "/v1/events", {"Authorization": "Bearer pk_test_public"})
    assert status == 401
    assert "Invalid API Key" in body["error"]["message"]
    assert "pk_test_public" not in body["error"]["message"]  # masked, as Stripe does
    status, body = raw(fake, "/v1/events/evt_nope", {"Authorization": "Bearer sk_test_fake"})
    assert (status, body["error"]["code"]) == (404, "resource_missing")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client(fake).v1.webhook_endpoints.create({"url": "shop.example", "enabled_events": ["*"]})
    assert exc.value.param == "url"


def test_only_the_given_keys(fake: FakeStripe) -> None:
    with FakeStripe(keys={"sk_test_mine"}) as strict:
        assert client(strict, "sk_test_mine").v1.webhook_endpoints.list().data == []
        with pytest.raises(stripe.AuthenticationError):
            client(strict, "sk_test_other").v1.webhook_endpoints.list()


def test_events_list_filters_and_retrieve(fake: FakeStripe) -> None:
    old = fake.add_event(build_event("customer.created", created=1_700_000_000))
    paid = fake.add_event(build_event("invoice.paid", created=1_700_000_100))
    failed = fake.add_event(
        {**build_event("invoice.payment_failed", created=1_700_000_200), "pending_webhooks": 0}
    )
    fake.add_event(build_event("customer.created", livemode=True, created=1_700_000_300))
    events = client(fake).v1.events

    def ids(params: dict[str, Any]) -> list[str]:
        return [e.id for e in events.list(params).data]  # type: ignore[arg-type]

    assert ids({}) == [failed["id"], paid["id"], old["id"]]  # newest first, test mode only
    assert ids({"created": {"gte": 1_700_000_100}}) == [failed["id"], paid["id"]]
    assert ids({"type": "invoice.*"}) == [failed["id"], paid["id"]]
    assert ids({"types": ["customer.created", "invoice.paid"]}) == [paid["id"], old["id"]]
    assert ids({"delivery_success": True}) == [failed["id"]]
    assert ids({"delivery_success": False}) == [paid["id"], old["id"]]
    page = events.list({"limit": 1})
    assert ([e.id for e in page.data], page.has_more) == ([failed["id"]], True)
    assert ids({"starting_after": failed["id"], "limit": 1}) == [paid["id"]]
    assert events.retrieve(paid["id"]).type == "invoice.paid"
    with pytest.raises(stripe.InvalidRequestError, match="limit"):
        events.list({"limit": 101})


def test_fail_next_and_recorded_requests(fake: FakeStripe) -> None:
    fake.fail_next(500, {"type": "api_error", "message": "Try again later."})
    api = stripe.StripeClient(
        "sk_test_fake", base_addresses={"api": fake.url}, max_network_retries=0
    )
    with pytest.raises(stripe.APIError, match="Try again later"):
        api.v1.webhook_endpoints.list()
    api.v1.webhook_endpoints.create(
        {"url": "https://shop.example/hook", "enabled_events": ["charge.refunded"]}
    )
    assert fake.calls("POST")[-1].form == {
        "url": "https://shop.example/hook",
        "enabled_events": ["charge.refunded"],
    }


def test_event_destinations(fake: FakeStripe) -> None:
    api = client(fake)
    made = api.v2.core.event_destinations.create(
        {
            "name": "meters",
            "type": "webhook_endpoint",
            "event_payload": "thin",
            "enabled_events": ["v1.billing.meter.error_report_triggered"],
            "webhook_endpoint": {"url": "https://shop.example/thin"},
            "include": ["webhook_endpoint.signing_secret"],
        }
    )
    assert made.webhook_endpoint.signing_secret == fake.secrets[made.id]
    assert api.v2.core.event_destinations.disable(made.id).status == "disabled"
    assert api.v2.core.event_destinations.retrieve(made.id).status == "disabled"
