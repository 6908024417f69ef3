"""Endpoint confusion: each endpoint accepts only what was signed for it, in its mode.

A payload signed with endpoint A's secret and posted to endpoint B is refused; a live
event on a test endpoint (and the reverse) is refused; a disabled or deleted endpoint is
404 even for a payload signed with its own secret, and no delivery row is written for it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery, WebhookEndpoint
from flask_stripe_hooks.testing import build_event, create_endpoint, new_secret, sign_payload
from flask_stripe_hooks.utils import utcnow

from support.helpers import count, handled, record, rows


@pytest.fixture
def recorder(app, hooks):
    @hooks.on("*")
    def every(event, **kwargs):
        record(app, event.id, event.type)


@pytest.fixture
def pair(app, db) -> tuple[Any, str, Any, str]:
    """Two test-mode endpoints A and B, each with its own secret."""
    a_secret, b_secret = new_secret(), new_secret()
    with app.app_context():
        a = create_endpoint(db, secret=a_secret)
        b = create_endpoint(db, secret=b_secret)
    return a, a_secret, b, b_secret


def post(client: Any, path: str, body: str, header: str) -> Any:
    count("endpoint confusion cases")
    return client.post(
        path, data=body, headers={"Stripe-Signature": header, "Content-Type": "application/json"}
    )


def path_of(endpoint: Any) -> str:
    return f"/stripe/webhook/{endpoint.uuid}/"


def deliveries(app: Any, endpoint: Any) -> list[tuple[str, bool]]:
    return [
        (d.outcome, d.valid)
        for d in rows(app, WebhookDelivery, WebhookDelivery.endpoint_id == endpoint.id)
    ]


def set_status(app: Any, db: Any, endpoint: Any, status: str) -> None:
    with app.app_context():
        db.session.execute(
            sa.update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint.id)
            .values(status=status)
        )
        db.session.commit()


def test_signed_for_a_posted_to_b_is_400(app, client, pair, recorder):
    a, a_secret, b, b_secret = pair
    event = build_event("payment_intent.succeeded")
    body, header = sign_payload(event, a_secret)
    response = post(client, path_of(b), body, header)
    assert response.status_code == 400
    assert response.text.strip() == "signature does not match"
    assert handled(app) == [] and rows(app, StripeEvent) == []
    assert deliveries(app, b) == [("rejected", False)] and deliveries(app, a) == []
    # The same request where it belongs is accepted.
    assert post(client, path_of(a), body, header).text.strip() == "processed"
    assert handled(app) == [(event["id"], "payment_intent.succeeded")]
    (stored,) = rows(app, StripeEvent)
    assert stored.endpoint_id == a.id


def test_both_secrets_in_one_header_for_b_is_accepted_only_for_its_own(app, client, pair):
    """A header carrying A's and B's signatures verifies on either (Stripe does this during
    a secret roll); one carrying only A's never verifies on B, whatever else it holds."""
    a, a_secret, b, b_secret = pair
    body, header_a = sign_payload(build_event("customer.created"), a_secret)
    _, header_b = sign_payload(body, b_secret, int(header_a.split(",")[0][2:]))
    both = header_a + "," + header_b.split(",")[1]
    assert post(client, path_of(b), body, both).status_code == 200
    body2, header_a2 = sign_payload(build_event("customer.created"), a_secret)
    forged = header_a2 + ",v1=" + "0" * 64 + ",v0=" + header_b.split("v1=")[1]
    assert post(client, path_of(b), body2, forged).status_code == 400
    assert [e.id for e in rows(app, StripeEvent)] == [json.loads(body)["id"]]


def test_one_event_sent_to_two_endpoints_runs_once(app, client, pair, recorder):
    """Stripe sends one event to every endpoint subscribed to it, each signed with that
    endpoint's secret: the event id is the gate, so the handlers run once."""
    a, a_secret, b, b_secret = pair
    event = build_event("invoice.paid")
    assert post(client, path_of(a), *sign_payload(event, a_secret)).text.strip() == "processed"
    assert post(client, path_of(b), *sign_payload(event, b_secret)).text.strip() == "duplicate"
    assert handled(app) == [(event["id"], "invoice.paid")]
    assert deliveries(app, a) == [("processed", True)]
    assert deliveries(app, b) == [("duplicate", True)]


@pytest.mark.parametrize("endpoint_live", [False, True], ids=["test-endpoint", "live-endpoint"])
def test_wrong_mode_is_400(app, db, client, recorder, endpoint_live: bool):
    secret = new_secret()
    with app.app_context():
        endpoint = create_endpoint(db, secret=secret, livemode=endpoint_live)
    wrong = build_event("charge.succeeded", livemode=not endpoint_live)
    response = post(client, path_of(endpoint), *sign_payload(wrong, secret))
    assert response.status_code == 400
    mode, other = ("test", "live") if endpoint_live else ("live", "test")
    assert response.text.strip() == f"{mode}-mode event sent to a {other} endpoint"
    assert handled(app) == [] and rows(app, StripeEvent) == []
    assert deliveries(app, endpoint) == [("rejected", False)]
    right = build_event("charge.succeeded", livemode=endpoint_live)
    assert post(client, path_of(endpoint), *sign_payload(right, secret)).status_code == 200
    assert handled(app) == [(right["id"], "charge.succeeded")]


def test_live_event_signed_for_the_live_endpoint_sent_to_the_test_one(app, db, client, recorder):
    live_secret, test_secret = new_secret(), new_secret()
    with app.app_context():
        live = create_endpoint(db, secret=live_secret, livemode=True)
        test = create_endpoint(db, secret=test_secret)
    body, header = sign_payload(build_event("charge.succeeded", livemode=True), live_secret)
    assert post(client, path_of(test), body, header).status_code == 400
    assert post(client, path_of(live), body, header).status_code == 200
    assert deliveries(app, test) == [("rejected", False)]


@pytest.mark.parametrize("status", ["disabled", "deleted"])
def test_disabled_or_deleted_endpoint_is_404_and_writes_nothing(
    app, db, client, pair, recorder, status: str
):
    a, a_secret, b, b_secret = pair
    if status == "deleted":
        with app.app_context():
            db.session.execute(sa.delete(WebhookEndpoint).where(WebhookEndpoint.id == a.id))
            db.session.commit()
    else:
        set_status(app, db, a, "disabled")
    event = build_event("customer.created")
    body, header = sign_payload(event, a_secret)
    response = post(client, path_of(a), body, header)
    assert response.status_code == 404 and response.text.strip() == "unknown endpoint"
    # Not even a rejected delivery: a dead URL must not fill the database.
    assert rows(app, WebhookDelivery) == [] and rows(app, StripeEvent) == []
    assert handled(app) == []
    if status == "disabled":
        set_status(app, db, a, "enabled")
        assert post(client, path_of(a), body, header).status_code == 200
        assert handled(app) == [(event["id"], "customer.created")]


def test_endpoint_whose_secrets_all_expired_is_400(app, db, client, pair, recorder):
    a, a_secret, b, b_secret = pair
    with app.app_context():
        stored = db.session.get(WebhookEndpoint, a.id)
        stored.secrets = [
            {"secret": a_secret, "expires_at": (utcnow() - timedelta(seconds=1)).isoformat()}
        ]
        db.session.commit()
    response = post(client, path_of(a), *sign_payload(build_event("customer.created"), a_secret))
    assert response.status_code == 400
    assert response.text.strip() == "endpoint has no active signing secret"
    assert rows(app, StripeEvent) == [] and handled(app) == []


@pytest.mark.parametrize(
    "shape, status",
    [
        ("upper case", 200),
        ("no trailing slash", 200),
        ("hex without dashes", 404),
        ("braces", 404),
        ("another endpoint's uuid, one digit off", 404),
        ("prefix twice", 404),
    ],
)
def test_endpoint_uuid_in_the_path(app, client, pair, recorder, shape: str, status: int):
    a, a_secret, b, b_secret = pair
    text = str(a.uuid)
    last = "0" if text[-1] != "0" else "1"
    paths = {
        "upper case": f"/stripe/webhook/{text.upper()}/",
        "no trailing slash": f"/stripe/webhook/{text}",
        "hex without dashes": f"/stripe/webhook/{a.uuid.hex}/",
        "braces": f"/stripe/webhook/{{{text}}}/",
        "another endpoint's uuid, one digit off": f"/stripe/webhook/{text[:-1]}{last}/",
        "prefix twice": f"/stripe/stripe/webhook/{text}/",
    }
    body, header = sign_payload(build_event("customer.created"), a_secret)
    response = post(client, paths[shape], body, header)
    assert response.status_code == status
    assert len(handled(app)) == (1 if status == 200 else 0)
    assert len(rows(app, WebhookDelivery)) == (1 if status == 200 else 0)
