"""Events delivered out of order: real lifecycles in shuffled orders, ``latest_only``
handlers, ``is_stale``, ``fetch_object``; several processes at once on PostgreSQL."""

from __future__ import annotations

import random
from typing import Any

import pytest
import sqlalchemy as sa
from flask_stripe_hooks import StripeHooks, signals
from flask_stripe_hooks.models import StripeEvent
from flask_stripe_hooks.testing import (
    FakeStripe,
    build_event,
    create_endpoint,
    deliver,
    sign_payload,
)

from support.concurrent_delivery import Deliverers
from support.helpers import make_app, reset_postgres, rows

T0 = 1_780_000_000


def lifecycle(kind: str) -> list[dict[str, Any]]:
    """The events of one object's life, oldest first, one second apart (Stripe's ``created``)."""
    steps = {
        "subscription": [
            ("customer.subscription.created", "incomplete"),
            ("customer.subscription.updated", "active"),
            ("customer.subscription.updated", "past_due"),
            ("customer.subscription.updated", "active"),
            ("customer.subscription.deleted", "canceled"),
        ],
        "invoice": [
            ("invoice.created", "draft"),
            ("invoice.finalized", "open"),
            ("invoice.paid", "paid"),
        ],
        "payment_intent": [
            ("payment_intent.created", "requires_payment_method"),
            ("payment_intent.processing", "processing"),
            ("payment_intent.succeeded", "succeeded"),
        ],
    }[kind]
    object_id = f"{kind[:3]}_{random.randrange(10**12)}"
    return [
        build_event(event_type, {"id": object_id, "status": status}, created=T0 + i)
        for i, (event_type, status) in enumerate(steps)
    ]


@pytest.fixture
def state(hooks: StripeHooks) -> dict[str, str]:
    """What a ``latest_only`` handler keeps: each object's status."""
    kept: dict[str, str] = {}

    @hooks.on("customer.subscription", "invoice", "payment_intent", latest_only=True)
    def keep_newest(event: Any, **kwargs: Any) -> None:
        kept[event.object["id"]] = event.object["status"]

    return kept


@pytest.mark.parametrize("kind", ["subscription", "invoice", "payment_intent"])
@pytest.mark.parametrize("seed", range(6))
def test_latest_only_ends_with_the_newest_state(app, client, endpoint, state, kind, seed):
    events = lifecycle(kind)
    shuffled = events[:]
    random.Random(seed).shuffle(shuffled)
    for item in shuffled:
        response = deliver(client, endpoint, item)
        assert (response.status_code, response.text) == (200, "processed\n")
    assert state == {events[-1]["data"]["object"]["id"]: events[-1]["data"]["object"]["status"]}
    # Every event is stored and processed; those that arrived after a newer one are marked.
    stored = {e.id: e for e in rows(app, StripeEvent)}
    assert {e.status for e in stored.values()} == {"processed"}
    seen: list[int] = []
    for item in shuffled:
        stale = stored[item["id"]].stale
        newer_seen = any(created > item["created"] for created in seen)
        assert (stale is not None) == newer_seen
        if stale:
            assert stale["skipped"] == [f"{__name__}.state.<locals>.keep_newest"]
            newer = stored[stale["newer_event_id"]]
            assert newer.created.timestamp() > item["created"]
        seen.append(item["created"])


def test_every_handler_can_read_is_stale_and_the_signal_names_the_skipped(
    app, client, endpoint, hooks
):
    seen, skipped = [], []
    signals.stale_skipped.connect(lambda sender, **kw: skipped.append(kw["handlers"]), weak=False)

    @hooks.on("customer.subscription")
    def look(event: Any, **kwargs: Any) -> None:
        seen.append((event.id, event.is_stale, event.newer_event_id))

    try:
        old, new = lifecycle("subscription")[1:3]
        deliver(client, endpoint, new)
        deliver(client, endpoint, old)
        assert seen == [(new["id"], False, None), (old["id"], True, new["id"])]
        assert skipped == []  # no latest_only handler here: nothing was skipped

        @hooks.on("customer.subscription", latest_only=True)
        def newest(event: Any, **kwargs: Any) -> None:
            pass

        oldest = lifecycle("subscription")[0]
        oldest["data"]["object"]["id"] = new["data"]["object"]["id"]
        deliver(client, endpoint, oldest)
        assert seen[-1] == (oldest["id"], True, new["id"])
        qualname = "test_every_handler_can_read_is_stale_and_the_signal_names_the_skipped"
        assert skipped == [[f"{__name__}.{qualname}.<locals>.newest"]]
    finally:
        signals.stale_skipped.receivers.clear()


def test_same_second_events_are_never_stale(app, client, endpoint, state):
    first, second = lifecycle("subscription")[1:3]
    second["created"] = first["created"]  # two updates in the same second
    for order in ((first, second), (second, first)):
        for item in order:
            item["id"] = f"evt_{random.randrange(10**12)}"
            deliver(client, endpoint, item)
        assert not any(e.stale for e in rows(app, StripeEvent))
    # Either could be the newer one; the handler ran for both, in arrival order.
    assert state[first["data"]["object"]["id"]] == first["data"]["object"]["status"]


def test_an_event_that_failed_is_judged_when_it_is_delivered_again(app, client, endpoint, hooks):
    """A failed attempt records nothing; the redelivery that processes the event is judged
    against what was applied meanwhile."""
    seen: list[tuple[str, bool]] = []
    broken = {"on": True}

    @hooks.on("customer.subscription")
    def look(event: Any, **kwargs: Any) -> None:
        if broken["on"]:
            raise RuntimeError("down")
        seen.append((event.id, event.is_stale))

    older, newer, newest = lifecycle("subscription")[1:4]
    assert deliver(client, endpoint, older).status_code == 500
    assert deliver(client, endpoint, newest).status_code == 500
    broken["on"] = False
    assert deliver(client, endpoint, newer).status_code == 200
    assert deliver(client, endpoint, older).status_code == 200  # older than what was applied
    assert deliver(client, endpoint, newest).status_code == 200  # newer: not stale
    assert seen == [(newer["id"], False), (older["id"], True), (newest["id"], False)]
    stored = {e.id: e.stale for e in rows(app, StripeEvent)}
    assert stored[older["id"]] is None  # no latest_only handler skipped it
    assert [e.status for e in rows(app, StripeEvent)] == ["processed"] * 3


def test_the_object_is_tracked_by_the_events_own_statement_on_postgresql(
    app, db, client, endpoint, database_url
):
    """On PostgreSQL one statement inserts the event and records its object: tracking adds
    no round trip. Elsewhere it is a statement of its own."""
    statements: list[str] = []

    def spy(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    item = lifecycle("invoice")[0]
    sa.event.listen(sa.Engine, "before_cursor_execute", spy)
    try:
        assert deliver(client, endpoint, item).status_code == 200
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", spy)
    writes = [s for s in statements if "INSERT INTO" in s]
    tracking = [s for s in writes if "INSERT INTO stripe_hooks_object" in s]
    assert len(tracking) == 1
    if database_url.startswith("postgresql"):
        assert "INSERT INTO stripe_hooks_event" in tracking[0]
        assert len(writes) == 2  # the event with its object, and the delivery
    else:
        assert len(writes) == 3
    with app.app_context():
        tracked = db.session.execute(sa.text("SELECT id, event_id FROM stripe_hooks_object"))
        assert tracked.all() == [(item["data"]["object"]["id"], item["id"])]


def test_fetch_object_asks_stripe_once_per_delivery(app_factory, hooks):
    with FakeStripe() as fake:
        app = app_factory(STRIPE_TEST_SECRET_KEY="sk_test_fake", STRIPE_HOOKS_API_BASE=fake.url)
        fetched = []

        @hooks.on("customer.subscription.updated")
        def first(event: Any, **kwargs: Any) -> None:
            fetched.append(event.fetch_object()["status"])

        @hooks.on("customer.subscription")
        def second(event: Any, **kwargs: Any) -> None:
            fetched.append(event.fetch_object()["status"])

        item = lifecycle("subscription")[1]  # says "active"; Stripe says "canceled" now
        sub_id = item["data"]["object"]["id"]
        fake.add_object(
            f"/v1/subscriptions/{sub_id}",
            {"id": sub_id, "object": "subscription", "status": "canceled"},
        )
        with app.app_context():
            endpoint = create_endpoint(app.extensions["sqlalchemy"])
        assert deliver(app.test_client(), endpoint, item).status_code == 200
        assert fetched == ["canceled", "canceled"]
        gets = [r for r in fake.calls("GET") if r.path.startswith("/v1/subscriptions/")]
        assert len(gets) == 1


def test_concurrent_deliveries_for_one_object_keep_the_newest(postgres_url):
    """Several processes deliver different events about one subscription at the same moment:
    the object's row lock orders them, and the newest state is the one kept."""
    reset_postgres(postgres_url)
    app = make_app(postgres_url, StripeHooks())
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        endpoint = create_endpoint(db)
        with db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TABLE object_state (id TEXT PRIMARY KEY, status TEXT, event_id TEXT)"
                )
            )
    secret = endpoint.secrets[0]["secret"]
    with Deliverers(postgres_url, "newest", len(lifecycle("subscription"))) as deliverers:
        for round_ in range(3):
            events = lifecycle("subscription")
            random.Random(round_).shuffle(events)
            work = [(endpoint.uuid, *sign_payload(item, secret)) for item in events]
            assert deliverers.round(work) == ["200 processed"] * len(events)
            newest = max(events, key=lambda e: e["created"])
            sub_id = newest["data"]["object"]["id"]
            with app.app_context():
                kept = db.session.execute(
                    sa.text("SELECT status, event_id FROM object_state WHERE id = :id"),
                    {"id": sub_id},
                ).one()
            assert tuple(kept) == ("canceled", newest["id"])
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("queue", [False, True], ids=["in-request", "queue mode"])
def test_pause_stores_and_acknowledges_then_resume_runs_in_order(app_factory, hooks, queue):
    queued: list[str] = []
    config = {"STRIPE_HOOKS_EVENT_CALLBACK": queued.append} if queue else {}
    app = app_factory(**config)
    ran: list[str] = []

    @hooks.on("customer.subscription")
    def handler(event: Any, **kwargs: Any) -> None:
        ran.append(event.id)

    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    runner = app.test_cli_runner()
    paused = runner.invoke(args=["stripe-hooks", "pause"])
    assert paused.exit_code == 0 and "Paused 1 endpoint(s)" in paused.output
    events = lifecycle("subscription")
    arrival = events[:]
    random.Random(7).shuffle(arrival)
    client = app.test_client()
    for item in arrival:
        response = deliver(client, endpoint, item)
        assert (response.status_code, response.text) == (200, "paused\n")
    assert ran == [] and queued == []  # stored, acknowledged, handed to nobody
    assert {e.status for e in rows(app, StripeEvent)} == {"pending"}

    with app.app_context():  # a worker that gets a message while paused leaves it pending
        assert hooks.process_stored(arrival[0]["id"]).outcome == "paused"

    resumed = runner.invoke(args=["stripe-hooks", "resume"])
    assert resumed.exit_code == 0, resumed.output
    in_order = [e["id"] for e in events]  # oldest created first, not in arrival order
    if queue:
        assert "resume: 5 queued" in resumed.output and queued == in_order
        with app.app_context():
            for event_id in queued:
                assert hooks.process_stored(event_id).outcome == "processed"
    else:
        assert "resume: 5 processed" in resumed.output
    assert ran == in_order
    after = deliver(client, endpoint, build_event("customer.created")).text
    assert after == ("queued\n" if queue else "processed\n")  # not paused any more


def test_pause_names_unknown_endpoints(runner, endpoint):
    result = runner.invoke(args=["stripe-hooks", "pause", "not-a-uuid"])
    assert result.exit_code == 1 and "Not endpoint uuids: not-a-uuid" in result.output


def test_thin_events_are_ordered_by_their_related_object(app, db, client, hooks):
    from flask_stripe_hooks.testing import build_thin_event

    kept: list[str] = []

    @hooks.on("v1.billing.meter", latest_only=True)
    def newest_only(event: Any, **kwargs: Any) -> None:
        kept.append(event.id)

    with app.app_context():
        endpoint = create_endpoint(db, payload="thin")
    meter = {"id": "mtr_1", "type": "billing.meter", "url": "/v1/billing/meters/mtr_1"}
    older, newer = (
        build_thin_event(
            "v1.billing.meter.error_report_triggered", related_object=meter, created=T0 + i
        )
        for i in range(2)
    )
    for item in (newer, older):
        assert deliver(client, endpoint, item).status_code == 200
    assert kept == [newer["id"]]
    stale = {e.id: e.stale for e in rows(app, StripeEvent)}
    assert stale[older["id"]]["newer_event_id"] == newer["id"]
