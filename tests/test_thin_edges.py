"""Signed thin input that is not a thin event Stripe would send is answered 400 with the
field that is wrong, never a 5xx, and nothing is stored but the rejected delivery; every thin
type stripe-python knows is accepted. (Over-long ids and absurd ``created`` values are
``test_guard``'s business.) SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask_stripe_hooks import event_types
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery
from flask_stripe_hooks.testing import build_thin_event, create_endpoint, deliver

from support.helpers import rows

TYPE = "v1.customer.created"


@pytest.fixture
def thin(app: Flask, db: Any) -> Any:
    with app.app_context():
        return create_endpoint(db, payload="thin")


def without(payload: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != key}


def edit(**changes: Any) -> dict[str, Any]:
    return {**build_thin_event(TYPE), **changes}


RELATED = {"id": "cus_1", "type": "customer", "url": "/v1/customers/cus_1"}
CASES = [
    (
        without(build_thin_event(TYPE), "related_object"),
        "thin event has no related_object (a v1.customer.created event has one)",
    ),
    (edit(related_object=None), "thin event has no related_object"),
    (edit(related_object="cus_1"), "thin event's related_object is not an object"),
    (edit(related_object=without(RELATED, "url")), "thin event's related_object has no url"),
    (edit(related_object={**RELATED, "id": 7}), "thin event's related_object has no id"),
    (edit(related_object={**RELATED, "type": ""}), "thin event's related_object has no type"),
    (
        edit(related_object={**RELATED, "url": "https://evil.example/x"}),
        "thin event's related_object url is not a path",
    ),
    (edit(context=["acct_1"]), "thin event's context is not an account id"),
    (edit(context=42), "thin event's context is not an account id"),
    (edit(reason="request"), "thin event's reason has no type"),
    (edit(reason={"request": {}}), "thin event's reason has no type"),
    (edit(reason={"type": "request"}), "thin event's reason has no request id and idempotency_key"),
    (
        edit(reason={"type": "request", "request": {"id": "req_1"}}),
        "thin event's reason has no request id",
    ),
    (edit(snapshot_event=12), "thin event's snapshot_event is not an event id"),
    (edit(snapshot_event="cus_1"), "thin event's snapshot_event is not an event id"),
    (edit(snapshot_event="evt_" + "x" * 300), "thin event's snapshot_event is not an event id"),
    (without(build_thin_event(TYPE), "created"), "thin event has no created time"),
    (without(build_thin_event(TYPE), "type"), "event has no valid type"),
    (edit(type=["v1.customer.created"]), "event has no valid type"),
    (edit(livemode="false"), "event has no livemode"),
    (
        edit(object="v2.core.event_destination"),
        'body is not a Stripe thin event (object is not "v2.core.event")',
    ),
    ([build_thin_event(TYPE)], 'body is not a Stripe thin event (object is not "v2.core.event")'),
    ("thin", 'body is not a Stripe thin event (object is not "v2.core.event")'),
]


@pytest.mark.parametrize(("payload", "reason"), CASES, ids=[r for _, r in CASES])
def test_bad_signed_thin_input_is_400_with_the_field(app, client, thin, payload, reason):
    response = deliver(client, thin, json.dumps(payload))
    assert response.status_code == 400, response.text
    assert response.text.strip().startswith(reason)
    assert rows(app, StripeEvent) == []
    (delivery,) = rows(app, WebhookDelivery)
    assert (delivery.outcome, delivery.valid) == ("rejected", False)
    assert delivery.error.startswith(reason)


JUNK = [None, 0, -1, 1.5, True, "", "x" * 5000, [], {}, [{}], {"id": {}}, "évt_☃"]
FIELDS = [
    "id",
    "object",
    "type",
    "livemode",
    "context",
    "related_object",
    "reason",
    "snapshot_event",
    "data",
]


def test_junk_in_any_field_is_never_a_5xx(app, client, thin):
    answers: dict[int, int] = {}
    for field in FIELDS:  # "created" is test_guard's
        for value in JUNK:
            response = deliver(client, thin, {**build_thin_event(TYPE), field: value})
            assert response.status_code < 500, (field, value, response.text)
            answers[response.status_code] = answers.get(response.status_code, 0) + 1
    assert set(answers) <= {200, 400}
    # Stored: junk where stripe-python reads nothing (data, an empty context ...), and a type
    # it does not know yet (a future one), never the rest.
    assert {e.type for e in rows(app, StripeEvent)} == {TYPE, "évt_☃"}


def test_every_thin_type_stripe_python_knows_is_accepted(app, client, thin, hooks):
    got: list[str] = []
    hooks.on("*")(lambda event, **kw: got.append(event.type))
    types = event_types.thin_event_types()
    for event_type in types:
        response = deliver(client, thin, build_thin_event(event_type))
        assert (response.status_code, response.text.strip()) == (200, "processed"), event_type
    assert got == list(types) and len(rows(app, StripeEvent)) == len(types)
    # A type stripe-python does not know yet, with or without a related object.
    for payload in (
        build_thin_event("v1.newer.thing"),
        build_thin_event("v2.newer.thing", related_object=False),
    ):
        assert deliver(client, thin, payload).text.strip() == "processed"
    v1 = [t for t in types if t.startswith("v1.")]
    assert len(v1) >= 269 and any(t.startswith("v2.") for t in types)
