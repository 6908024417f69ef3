"""Trust boundaries in bytes and in odd signed input: rejected deliveries keep a prefix within
a per-endpoint bound in bytes, a signed event whose fields do not fit the database is a 400
or a 200 (never a 5xx), and a ``Stripe-Signature`` header is bounded before any HMAC."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
import sqlalchemy as sa
import stripe
from flask_stripe_hooks import StripeHooks
from flask_stripe_hooks.errors import Rejected
from flask_stripe_hooks.models import StripeEvent, TrackedObject, WebhookDelivery
from flask_stripe_hooks.pipeline import verification
from flask_stripe_hooks.testing import (
    build_event,
    build_thin_event,
    create_endpoint,
    deliver,
    new_secret,
    sign_payload,
)

from support.helpers import handled, make_app, record, rows

METER_ERROR = "v1.billing.meter.error_report_triggered"
MB = 1024 * 1024


def post(client: Any, endpoint: Any, body: bytes | str, header: str, **headers: str) -> Any:
    return client.post(
        f"/stripe/webhook/{endpoint.uuid}/",
        data=body,
        headers={"Stripe-Signature": header, "Content-Type": "application/json", **headers},
    )


def stored_bytes(app: Any) -> int:
    """What the delivery rows hold: their bodies and headers."""
    return sum(len(d.body) + len(json.dumps(d.headers)) for d in rows(app, WebhookDelivery))


def database_size(app: Any) -> int:
    """The database's size on disk: the delivery table with its TOAST and indexes on
    PostgreSQL, the file (and its journal) on SQLite."""
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            return int(
                db.session.execute(
                    sa.text("SELECT pg_total_relation_size('stripe_hooks_delivery')")
                ).scalar_one()
            )
        path = db.engine.url.database
        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


@pytest.fixture
def seen(app: Any, hooks: StripeHooks) -> list[Any]:
    """Every event a handler got; each call also writes its row in ``handled``."""
    events: list[Any] = []
    hooks.on("*")(lambda event, **kwargs: events.append(event) or record(app, event.id))
    return events


# -- rejected deliveries, bounded in bytes -------------------------------------------------------


def noise(size: int) -> str:
    """``size`` random characters: what is stored does not compress away."""
    return base64.b64encode(os.urandom(size * 3 // 4)).decode()


def test_forty_badly_signed_megabytes_store_less_than_one(app, client, endpoint):
    before = database_size(app)
    body = json.dumps({"padding": noise(MB)})
    _, header = sign_payload(body, "whsec_not_the_secret")
    for _ in range(40):
        response = post(client, endpoint, body, header)
        assert (response.status_code, response.text) == (400, "signature does not match\n")
    deliveries = rows(app, WebhookDelivery)
    assert len(deliveries) == 40  # each one is still kept for audit: its first 4 KiB
    assert stored_bytes(app) < 40 * 5000
    assert database_size(app) - before < MB
    for delivery in deliveries:
        assert delivery.body == body.encode()[:4096]
        assert delivery.headers["Stripe-Signature"] == header
        assert delivery.error == f"signature does not match (kept 4096 of {len(body)} body bytes)"


def test_a_valid_event_is_stored_whole(app, client, endpoint, secret, seen):
    event = build_event("customer.created", {"metadata": {"notes": "x" * 400}, "big": "y" * MB})
    body, header = sign_payload(event, secret)
    assert post(client, endpoint, body, header).status_code == 200
    (delivery,) = rows(app, WebhookDelivery)
    assert delivery.body == body.encode() and delivery.error is None
    (stored,) = rows(app, StripeEvent)
    assert stored.data == event["data"]


def test_bytes_per_minute_bound_per_endpoint(app_factory):
    app = app_factory(
        STRIPE_HOOKS_MAX_REJECTED_BYTES_PER_MINUTE=20_000, STRIPE_HOOKS_STORE_BODY="failed"
    )
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        first, second = create_endpoint(db), create_endpoint(db)
    client = app.test_client()
    body = json.dumps({"padding": noise(100_000)})
    _, header = sign_payload(body, "whsec_not_the_secret")
    for _ in range(10):
        assert post(client, first, body, header).status_code == 400
    assert post(client, second, body, header).status_code == 400
    kept = [d for d in rows(app, WebhookDelivery) if d.endpoint_id == first.id]
    # ~4.3 KB a row: four fit in 20,000 bytes (eight if the run crossed into a new minute).
    assert 4 <= len(kept) <= 8 and all(len(d.body) == 4096 for d in kept)
    assert sum(d.endpoint_id == second.id for d in rows(app, WebhookDelivery)) == 1
    assert app.extensions["stripe_hooks"].rejected_limit.dropped.total == 10 - len(kept)


def test_headers_are_cut_and_the_prefix_is_configurable(app_factory):
    app = app_factory(STRIPE_HOOKS_REJECTED_PREFIX=100)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    body, header = sign_payload(build_event("customer.created"), "whsec_not_the_secret")
    response = post(app.test_client(), endpoint, body, header, **{"User-Agent": "u" * 10_000})
    assert response.status_code == 400
    (delivery,) = rows(app, WebhookDelivery)
    assert len(delivery.body) == 100
    assert sum(len(v) for v in delivery.headers.values()) == 100
    assert delivery.headers["Content-Type"] == "application/json"  # short ones come whole
    assert delivery.headers["Stripe-Signature"] == ""
    assert "User-Agent cut to" in delivery.error and "of 10000 characters" in delivery.error
    whole = app_factory(STRIPE_HOOKS_REJECTED_PREFIX=None)
    assert post(whole.test_client(), endpoint, body, header).status_code == 400
    assert {d.body for d in rows(whole, WebhookDelivery)} >= {body.encode()}


@pytest.mark.parametrize(
    "key",
    [
        "STRIPE_HOOKS_REJECTED_PREFIX",
        "STRIPE_HOOKS_MAX_REJECTED_BYTES_PER_MINUTE",
        "STRIPE_HOOKS_MAX_REJECTED_PER_MINUTE",
    ],
)
def test_bad_bounds_are_refused_naming_the_key(tmp_path, key):
    with pytest.raises(RuntimeError, match=f"{key} must be a whole number"):
        make_app(f"sqlite:///{tmp_path / 'x.db'}", StripeHooks(), **{key: "4k"})


# -- signed, but odd ------------------------------------------------------------------------------

LONG = "x" * 300


def changed(event: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """``event`` with ``fields`` set; ``a__b`` is ``event["a"]["b"]``."""
    for path, value in fields.items():
        *parents, last = path.split("__")
        target = event
        for parent in parents:
            target = target[parent]
        target[last] = value
    return event


def snapshot(**fields: Any) -> dict[str, Any]:
    return changed(build_event("customer.created"), **fields)


def thin(**fields: Any) -> dict[str, Any]:
    return changed(build_thin_event(METER_ERROR), **fields)


REFUSED = {
    "event id": (snapshot(id="evt_" + LONG), "event id is longer than 255 characters"),
    "type": (snapshot(type="customer." + LONG), "event type is longer than 255 characters"),
    "account": (snapshot(account="acct_" + LONG), "event account is longer than 255 characters"),
    "api_version": (
        snapshot(api_version="2" * 65),
        "event api_version is longer than 64 characters",
    ),
    "thin context": (thin(context="acct_" + LONG), "event context is longer than 255 characters"),
    "thin event id": (thin(id="evt_" + LONG), "event id is longer than 255 characters"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_ids_that_say_where_an_event_belongs_must_fit(app, client, endpoint, secret, seen, case):
    event, reason = REFUSED[case]
    target = endpoint
    if event["object"] != "event":
        with app.app_context():
            target = create_endpoint(app.extensions["sqlalchemy"], secret=secret, payload="thin")
    response = deliver(client, target, event)
    assert (response.status_code, response.text) == (400, reason + "\n")
    assert rows(app, StripeEvent) == [] and seen == []
    (delivery,) = rows(app, WebhookDelivery)
    assert delivery.outcome == "rejected" and delivery.error == reason


def test_an_object_id_too_long_to_track_is_processed_untracked(app, client, endpoint, seen):
    object_id = "cus_" + LONG
    older = build_event("customer.updated", {"id": object_id, "name": "new"}, created=2_000)
    newer = build_event("customer.updated", {"id": object_id, "name": "old"}, created=1_000)
    assert deliver(client, endpoint, older).status_code == 200
    assert deliver(client, endpoint, newer).status_code == 200  # never stale: not tracked
    assert deliver(client, endpoint, older).status_code == 200  # a duplicate
    assert [e.object_id for e in seen] == [object_id, object_id]
    assert [e.is_stale for e in seen] == [False, False]
    assert len(handled(app)) == 2
    assert {e.data["object"]["id"] for e in rows(app, StripeEvent)} == {object_id}
    assert rows(app, TrackedObject) == []


def test_a_related_object_id_too_long_to_track_is_processed_untracked(
    app, client, thin_endpoint, seen
):
    event = thin(related_object__id="mtr_" + LONG)
    assert deliver(client, thin_endpoint, event).status_code == 200
    assert deliver(client, thin_endpoint, event).status_code == 200
    assert [e.object_id for e in seen] == ["mtr_" + LONG]
    (stored,) = rows(app, StripeEvent)
    assert stored.status == "processed" and stored.data == event
    assert rows(app, TrackedObject) == []


def test_long_request_ids_are_cut_in_their_columns(app, client, endpoint, thin_endpoint, seen):
    request = {"id": "req_" + LONG, "idempotency_key": "k" * 300}
    events = [
        (endpoint, snapshot(request=request)),
        (thin_endpoint, thin(reason={"type": "request", "request": request})),
    ]
    for target, event in events:
        assert deliver(client, target, event).status_code == 200
    assert len(seen) == 2
    for stored in rows(app, StripeEvent):
        assert stored.request_id == request["id"][:255]
        assert stored.idempotency_key == request["idempotency_key"][:255]
    (stored_thin,) = rows(app, StripeEvent, StripeEvent.id == events[1][1]["id"])
    assert stored_thin.data["reason"]["request"] == request  # the whole one


ODD_TIMES = [10**20, -(10**15), 1e20, "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"]


@pytest.mark.parametrize("created", ODD_TIMES, ids=[str(t) for t in ODD_TIMES])
def test_an_absurd_created_is_stored_empty(app, client, endpoint, thin_endpoint, seen, created):
    events = [(endpoint, snapshot(created=created)), (thin_endpoint, thin(created=created))]
    for target, event in events:
        response = deliver(client, target, event)
        assert (response.status_code, response.text) == (200, "processed\n")
        assert deliver(client, target, event).status_code == 200  # then a duplicate
    assert [e.created for e in seen] == [None, None]
    stored = rows(app, StripeEvent)
    assert len(stored) == 2 and all(e.created is None and e.status == "processed" for e in stored)
    assert len(handled(app)) == 2


def test_a_plausible_thin_created_is_kept(app, client, thin_endpoint, seen):
    event = thin(created="2026-01-31T10:00:00.123+01:00")
    assert deliver(client, thin_endpoint, event).status_code == 200
    assert seen[0].created == 1_769_850_000


# -- the Stripe-Signature header ---------------------------------------------------------------


def signed_with(body: str, secret: str, extra: list[str], last: bool = True) -> str:
    """A header holding the valid ``v1`` signature after (or before) ``extra`` entries."""
    header = stripe.WebhookSignature.generate_signature_header(body, secret)
    t, v1 = header.split(",")
    return ",".join([t, *extra, v1] if last else [t, v1, *extra])


def test_a_huge_header_is_refused_before_any_hmac():
    body = json.dumps(build_event("customer.created"))
    secret = new_secret()
    header = signed_with(body, secret, ["v1=" + "0" * 96] * 10_000, last=False)
    assert len(header) > 1_000_000
    calls = []

    def check(text: str, secret: str) -> None:
        calls.append(secret)
        stripe.WebhookSignature.verify_header(text, header, secret, None)

    with pytest.raises(Rejected, match="longer than 2048 characters"):
        verification.verified_text(body.encode(), header, [secret], check, tolerance=300)
    assert calls == []


def test_signatures_are_bounded(app, client, endpoint, secret, seen):
    body = json.dumps(build_event("customer.created"))
    other = ["v1=" + "0" * 64] * 7
    assert post(client, endpoint, body, signed_with(body, secret, other)).status_code == 200
    response = post(client, endpoint, body, signed_with(body, secret, [*other, other[0]]))
    assert (response.status_code, response.text) == (
        400,
        "more than 8 v1 signatures in Stripe-Signature header\n",
    )
    huge = signed_with(body, secret, ["v1=" + "0" * 96] * 10_000, last=False)
    response = post(client, endpoint, body, huge)
    assert (response.status_code, response.text) == (
        400,
        "Stripe-Signature header longer than 2048 characters\n",
    )
    assert len(seen) == 1
    rejected = rows(app, WebhookDelivery, WebhookDelivery.outcome == "rejected")
    assert len(rejected) == 2
    assert all(len(d.headers["Stripe-Signature"]) <= 4096 for d in rejected)
