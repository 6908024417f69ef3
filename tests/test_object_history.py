"""An object's history: each event keeps the id of the object it is about, older events get
theirs from ``fill-object-ids``, and the event page links to the other events about it."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from flask_stripe_hooks.models import StripeEvent, event_table
from flask_stripe_hooks.testing import (
    build_event,
    build_thin_event,
    create_endpoint,
    deliver,
    new_secret,
    related_object_for,
)

from support.admin_support import ADMIN, allow
from support.helpers import rows


@pytest.fixture
def app(app_factory: Any) -> Any:
    return app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow)


def object_ids(app: Any) -> dict[str, str | None]:
    return {e.id: e.object_id for e in rows(app, StripeEvent)}


def test_new_events_keep_their_object_id(app: Any) -> None:
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        snapshot = create_endpoint(db)
        thin = create_endpoint(db, payload="thin")
    client = app.test_client()
    sub = build_event("customer.subscription.updated", {"id": "sub_1", "status": "active"})
    balance = build_event("balance.available", {"id": None})  # no id: no object
    kind = "v1.billing.meter.error_report_triggered"
    meter = build_thin_event(kind, related_object=related_object_for(kind, "mtr_1"))
    for endpoint, event in ((snapshot, sub), (snapshot, balance), (thin, meter)):
        assert deliver(client, endpoint, event).status_code == 200
    assert object_ids(app) == {sub["id"]: "sub_1", balance["id"]: None, meter["id"]: "mtr_1"}


def test_fill_object_ids_gives_older_events_theirs(app: Any) -> None:
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        endpoint = create_endpoint(db)
    client = app.test_client()
    events = [build_event("invoice.paid", {"id": f"in_{i}"}) for i in range(5)]
    events.append(build_event("balance.available", {"id": None}))
    for event in events:
        assert deliver(client, endpoint, event).status_code == 200
    with app.app_context():  # as stored before object ids were kept
        db.session.execute(event_table.update().values(object_id=None))
        db.session.commit()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["stripe-hooks", "fill-object-ids"])
    assert result.exit_code == 0, result.output
    assert "filled 5 event(s); 1 are about no object" in result.stdout
    ids = object_ids(app)
    assert [ids[e["id"]] for e in events] == [f"in_{i}" for i in range(5)] + [None]
    again = runner.invoke(args=["stripe-hooks", "fill-object-ids"])
    assert "filled 0 event(s)" in again.stdout  # safe to run again


def test_fill_object_ids_goes_in_batches(app: Any) -> None:
    from flask_stripe_hooks import retention
    from flask_stripe_hooks.state import get_state

    db = app.extensions["sqlalchemy"]
    with app.app_context():
        endpoint = create_endpoint(db)
    client = app.test_client()
    for i in range(7):
        deliver(client, endpoint, build_event("invoice.paid", {"id": f"in_{i}"}))
    with app.app_context():
        db.session.execute(event_table.update().values(object_id=None))
        db.session.commit()
        batches: list[int] = []
        filled = retention.fill_object_ids(get_state(), batch=3, progress=batches.append)
    assert filled == 7 and batches == [3, 3, 1]


def test_the_event_page_links_to_the_objects_other_events(app: Any) -> None:
    secret = new_secret()
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"], secret=secret)
    client = app.test_client()
    history = [
        build_event(t, {"id": "sub_9", "status": s}, created=1_700_000_000 + i)
        for i, (t, s) in enumerate(
            [
                ("customer.subscription.created", "incomplete"),
                ("customer.subscription.updated", "active"),
                ("customer.subscription.deleted", "canceled"),
            ]
        )
    ]
    other = build_event("customer.subscription.created", {"id": "sub_8"})
    for event in [*history, other]:
        assert deliver(client, endpoint, event, secret=secret).status_code == 200
    page = client.get(f"{ADMIN}/events/{history[0]['id']}").text
    assert 'href="/stripe-hooks/admin/events/?object=sub_9" id="object-history"' in page
    section = re.search(r'<section id="related">(.*?)</section>', page, re.S)
    assert section is not None
    listed = re.findall(r">(evt_\w+)</a>", section.group(1))
    assert listed == [history[2]["id"], history[1]["id"]]  # newest first, not itself
    assert other["id"] not in section.group(1)

    listing = client.get(f"{ADMIN}/events/?object=sub_9").text
    ids = re.findall(r'data-label="Id"><a href="[^"]+">(evt_\w+)<', listing)
    assert ids == [e["id"] for e in reversed(history)]
    assert 'value="sub_9"' in listing  # the filter shows what it filters by


def test_object_ids_are_indexed_with_the_list_order(app: Any) -> None:
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        indexes = sa.inspect(db.engine).get_indexes("stripe_hooks_event")
    found = {i["name"]: i["column_names"] for i in indexes}
    assert found["ix_stripe_hooks_event_object_received"] == ["object_id", "received_at", "id"]
