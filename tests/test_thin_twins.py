"""Twins: one business event sent as a snapshot event and as its thin twin (whose
``snapshot_event`` names it) runs its handlers once, whichever arrives first, in any order,
on redeliveries, after a failure, in queue mode, and under concurrent arrival from several
processes on PostgreSQL. Every app-level test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_stripe_hooks import StripeHooks
from flask_stripe_hooks.extension import get_state
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery
from flask_stripe_hooks.pipeline.run import process_stored
from flask_stripe_hooks.pipeline.storage import without_on_conflict
from flask_stripe_hooks.testing import (
    build_event,
    build_thin_event,
    build_thin_twin,
    create_endpoint,
    deliver,
    sign_payload,
)

from support.concurrent_delivery import Deliverers
from support.helpers import handled, make_app, on_postgresql, record, reset_postgres, rows


@pytest.fixture
def thin(app: Flask, db: Any) -> Any:
    with app.app_context():
        return create_endpoint(db, payload="thin")


@pytest.fixture
def handlers(app: Flask, hooks: Any) -> dict[str, bool]:
    """A snapshot handler and its thin counterpart; ``fail[kind]`` makes one raise."""
    fail = {"snapshot": False, "thin": False}

    @hooks.on("customer.created")
    def snapshot_handler(event: Any, **kwargs: Any) -> None:
        record(app, event.id, "snapshot handler")
        if fail["snapshot"]:
            raise RuntimeError("snapshot handler down")

    @hooks.on("v1.customer.created")
    def thin_handler(event: Any, **kwargs: Any) -> None:
        record(app, event.id, "thin handler")
        if fail["thin"]:
            raise RuntimeError("thin handler down")

    return fail


def statuses(app: Flask) -> dict[str, tuple[str, str | None]]:
    return {e.id: (e.status, e.twin_id) for e in rows(app, StripeEvent)}


def answer(response: Any) -> tuple[int, str]:
    return response.status_code, response.text.strip()


def twin_of(event_id: str) -> str:
    """What the twin that ran nothing is answered."""
    return f"twin of {event_id}: it ran the handlers"


@pytest.mark.parametrize("upsert", [True, False], ids=["on-conflict", "integrity-error"])
def test_snapshot_first_then_thin_twin_runs_nothing(app, client, endpoint, thin, handlers, upsert):
    snapshot = build_event("customer.created")
    twin = build_thin_twin(snapshot)
    s_id, t_id = snapshot["id"], twin["id"]
    with without_on_conflict() if not upsert else nullcontext():
        assert answer(deliver(client, endpoint, snapshot)) == (200, "processed")
        assert answer(deliver(client, thin, twin)) == (200, twin_of(s_id))
        for again in ((endpoint, snapshot), (thin, twin)):  # redeliveries of either
            assert answer(deliver(client, *again)) == (200, "duplicate")
    assert handled(app) == [(s_id, "snapshot handler")]
    # The link, both ways.
    assert statuses(app) == {s_id: ("processed", t_id), t_id: ("twin", s_id)}
    outcomes = sorted(d.outcome for d in rows(app, WebhookDelivery))
    assert outcomes == ["duplicate", "duplicate", "processed", "twin"]


@pytest.mark.parametrize("upsert", [True, False], ids=["on-conflict", "integrity-error"])
def test_thin_first_then_snapshot_twin_runs_nothing(app, client, endpoint, thin, handlers, upsert):
    snapshot = build_event("customer.created", {"email": "a@example.com"})
    twin = build_thin_twin(snapshot)
    s_id, t_id = snapshot["id"], twin["id"]
    with without_on_conflict() if not upsert else nullcontext():
        assert answer(deliver(client, thin, twin)) == (200, "processed")
        assert statuses(app) == {t_id: ("processed", s_id), s_id: ("twin", t_id)}
        assert answer(deliver(client, endpoint, snapshot)) == (
            200,
            twin_of(t_id),
        )
        for again in ((endpoint, snapshot), (thin, twin)):
            assert answer(deliver(client, *again)) == (200, "duplicate")
    assert handled(app) == [(t_id, "thin handler")]
    assert statuses(app) == {t_id: ("processed", s_id), s_id: ("twin", t_id)}
    # The snapshot event's row holds what was delivered, for the admin and reprocess.
    (stored,) = rows(app, StripeEvent, StripeEvent.id == s_id)
    assert stored.data["object"]["email"] == "a@example.com" and stored.type == "customer.created"
    assert stored.endpoint_id == endpoint.id and stored.attempts == 1


def test_a_failed_first_twin_leaves_the_business_event_to_the_other(
    app, client, endpoint, thin, handlers
):
    snapshot = build_event("customer.created")
    twin = build_thin_twin(snapshot)
    s_id, t_id = snapshot["id"], twin["id"]
    handlers["snapshot"] = True
    assert answer(deliver(client, endpoint, snapshot)) == (500, "handler failed")
    assert statuses(app) == {s_id: ("failed", None)}
    # The thin twin takes it over and runs; Stripe's retry of the snapshot event then runs
    # nothing, though its handler works again.
    assert answer(deliver(client, thin, twin)) == (200, "processed")
    handlers["snapshot"] = False
    assert deliver(client, endpoint, snapshot).status_code == 200
    assert handled(app) == [(t_id, "thin handler")]
    assert statuses(app) == {s_id: ("twin", t_id), t_id: ("processed", s_id)}

    # The other way round: the thin twin fails first, the snapshot event then runs.
    snapshot, handlers["thin"] = build_event("customer.created"), True
    twin = build_thin_twin(snapshot)
    assert deliver(client, thin, twin).status_code == 500
    assert answer(deliver(client, endpoint, snapshot)) == (200, "processed")
    handlers["thin"] = False
    assert answer(deliver(client, thin, twin)) == (
        200,
        twin_of(snapshot["id"]),
    )
    assert handled(app)[1:] == [(snapshot["id"], "snapshot handler")]


def test_events_without_a_twin_are_not_touched(app, client, endpoint, thin, handlers):
    alone = build_thin_event("v1.customer.created")  # no snapshot_event
    plain = build_event("customer.created")
    assert answer(deliver(client, thin, alone)) == (200, "processed")
    assert answer(deliver(client, endpoint, plain)) == (200, "processed")
    assert len(handled(app)) == 2
    assert statuses(app) == {alone["id"]: ("processed", None), plain["id"]: ("processed", None)}


def test_queue_mode_workers_apply_the_twins_rule(app_factory, hooks, database_url):
    queued: list[str] = []
    app = app_factory(STRIPE_HOOKS_EVENT_CALLBACK=queued.append)
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        snapshot_endpoint, thin = create_endpoint(db), create_endpoint(db, payload="thin")
    hooks.on("customer.created", "v1.customer.created")(
        lambda event, **kw: record(app, event.id, event.type)
    )
    snapshot = build_event("customer.created")
    twin = build_thin_twin(snapshot)
    client = app.test_client()
    assert answer(deliver(client, thin, twin)) == (200, "queued")
    assert answer(deliver(client, snapshot_endpoint, snapshot)) == (200, "queued")
    with app.app_context():  # the workers, snapshot first
        assert process_stored(get_state(), snapshot["id"]).outcome == "processed"
        result = process_stored(get_state(), twin["id"])
    assert (result.outcome, result.reason) == (
        "twin",
        twin_of(snapshot["id"]),
    )
    assert handled(app) == [(snapshot["id"], "customer.created")]
    assert statuses(app)[twin["id"]] == ("twin", snapshot["id"])

    # The thin twin's worker first: the snapshot event's delivery, queued after, is its twin.
    snapshot = build_event("customer.created", {"email": "b@example.com"})
    twin = build_thin_twin(snapshot)
    assert answer(deliver(client, thin, twin)) == (200, "queued")
    with app.app_context():
        assert process_stored(get_state(), twin["id"]).outcome == "processed"
    assert answer(deliver(client, snapshot_endpoint, snapshot)) == (200, twin_of(twin["id"]))
    (row,) = rows(app, StripeEvent, StripeEvent.id == snapshot["id"])
    assert (row.status, row.data["object"]["email"]) == ("twin", "b@example.com")
    assert handled(app)[1:] == [(twin["id"], "v1.customer.created")]


@on_postgresql
def test_a_thin_twin_claims_the_twin_key_before_its_objects_row(app_factory, hooks):
    """The lock order that keeps twins arriving at the same moment on PostgreSQL from
    deadlocking: a snapshot event locks its id, then its object's row (one statement); its thin
    twin takes the same order, the twin key (the snapshot event's id) first."""
    app = app_factory()
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        thin, engine = create_endpoint(db, payload="thin"), db.engine
    hooks.on("v1.customer.created")(lambda event, **kw: None)
    snapshot = build_event("customer.created")
    statements: list[tuple[str, str]] = []

    def seen(conn: Any, cursor: Any, sql: str, parameters: Any, *args: Any) -> None:
        statements.append((sql, str(parameters)))

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        assert answer(deliver(app.test_client(), thin, build_thin_twin(snapshot))) == (
            200,
            "processed",
        )
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    claim = next(
        n
        for n, (sql, parameters) in enumerate(statements)
        if sql.startswith("INSERT INTO stripe_hooks_event") and snapshot["id"] in parameters
    )
    objects = [n for n, (sql, _) in enumerate(statements) if "stripe_hooks_object" in sql]
    assert objects and min(objects) > claim, statements


# -- several processes at once, on PostgreSQL ---------------------------------------------------


def test_concurrent_twins_from_several_processes_run_once(postgres_url):
    reset_postgres(postgres_url)
    app = make_app(postgres_url, StripeHooks())
    try:
        with app.app_context():
            db = app.extensions["sqlalchemy"]
            endpoints = [create_endpoint(db), create_endpoint(db, payload="thin")]
        with Deliverers(postgres_url, "slow", 6) as deliverers:
            for _ in range(5):
                snapshot = build_event("customer.created")
                twin = build_thin_twin(snapshot)
                signed = [
                    (ep.uuid, *sign_payload(event, ep.secrets[0]["secret"]))
                    for ep, event in zip(endpoints, (snapshot, twin), strict=True)
                ]
                # three deliveries of each twin, all at once
                outputs = deliverers.round([signed[n % 2] for n in range(6)])
                assert [o.split()[0] for o in outputs] == ["200"] * 6, outputs
                assert sum(o == "200 processed" for o in outputs) == 1, outputs
                effects = [h for h in handled(app) if h[0] in (snapshot["id"], twin["id"])]
                assert len(effects) == 1, (effects, outputs)
                winner = effects[0][0]
                loser = twin["id"] if winner == snapshot["id"] else snapshot["id"]
                found = statuses(app)
                assert found[winner] == ("processed", loser) and found[loser] == ("twin", winner)
    finally:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


# -- the link, both ways, in the CLI and the admin ----------------------------------------------


def allow() -> bool:
    return True


def test_cli_and_admin_show_the_link_both_ways(app_factory, hooks):
    app = app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow)
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        snapshot_endpoint, thin = create_endpoint(db), create_endpoint(db, payload="thin")
    hooks.on("customer.created", "v1.customer.created")(lambda event, **kw: None)
    client = app.test_client()
    snapshot = build_event("customer.created")
    twin = build_thin_twin(snapshot)
    s_id, t_id = snapshot["id"], twin["id"]
    deliver(client, thin, twin)
    deliver(client, snapshot_endpoint, snapshot)

    listing = app.test_cli_runner().invoke(args=["stripe-hooks", "events"])
    assert listing.exit_code == 0, listing.output
    lines = {line.split()[0]: line for line in listing.output.splitlines()[1:]}
    assert f"processed, twin {s_id}" in lines[t_id]
    assert f"twin of {t_id}" in lines[s_id]
    twins_only = app.test_cli_runner().invoke(args=["stripe-hooks", "events", "--status", "twin"])
    assert [line.split()[0] for line in twins_only.output.splitlines()[1:]] == [s_id]

    page = client.get(f"/stripe-hooks/admin/events/{t_id}")
    assert page.status_code == 200
    assert f'href="/stripe-hooks/admin/events/{s_id}"' in page.text
    assert "this one ran the handlers, that one ran nothing" in page.text
    page = client.get(f"/stripe-hooks/admin/events/{s_id}")
    assert f'href="/stripe-hooks/admin/events/{t_id}"' in page.text
    assert "that one ran the handlers, this one ran nothing" in page.text
    assert '<span class="badge twin">twin</span>' in page.text


def test_the_twin_that_ran_nothing_is_never_run_again(app_factory, hooks):
    """Reprocessing it (the CLI, the queue, the admin) would run the business event twice."""
    queued: list[str] = []
    app = app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow, STRIPE_HOOKS_EVENT_CALLBACK=queued.append)
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        snapshot_endpoint, thin = create_endpoint(db), create_endpoint(db, payload="thin")
    hooks.on("customer.created", "v1.customer.created")(
        lambda event, **kw: record(app, event.id, event.type)
    )
    snapshot = build_event("customer.created")
    twin = build_thin_twin(snapshot)
    client = app.test_client()
    deliver(client, thin, twin)
    deliver(client, snapshot_endpoint, snapshot)
    with app.app_context():
        assert process_stored(get_state(), twin["id"]).outcome == "processed"
        assert process_stored(get_state(), snapshot["id"]).outcome == "twin"
    runner = app.test_cli_runner()
    result = runner.invoke(args=["stripe-hooks", "reprocess", snapshot["id"]])
    assert result.exit_code == 0 and "reprocess: 1 twin" in result.output, result.output
    queued.clear()
    result = runner.invoke(args=["stripe-hooks", "reprocess", snapshot["id"], "--enqueue"])
    assert "1 twin" in result.output and queued == []
    assert statuses(app)[snapshot["id"]] == ("twin", twin["id"])
    page = client.get(f"/stripe-hooks/admin/events/{snapshot['id']}")
    assert "Its twin ran the handlers" in page.text and "Process again" not in page.text
    assert handled(app) == [(twin["id"], "v1.customer.created")]

    # Its twin can be run again, as any event, and stays the one that ran.
    result = runner.invoke(args=["stripe-hooks", "reprocess", twin["id"]])
    assert "reprocess: 1 processed" in result.output
    result = runner.invoke(args=["stripe-hooks", "reprocess", twin["id"], "--enqueue"])
    assert "1 queued" in result.output and queued == [twin["id"]]
    with app.app_context():
        assert process_stored(get_state(), twin["id"]).outcome == "processed"
    assert handled(app) == [(twin["id"], "v1.customer.created")] * 3
    assert statuses(app) == {
        twin["id"]: ("processed", snapshot["id"]),
        snapshot["id"]: ("twin", twin["id"]),
    }
