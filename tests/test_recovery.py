"""Recovery and retention commands: process-pending, reprocess --failed, fetch-missed, prune;
the admin's counts and "process again". Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask, current_app
from flask_stripe_hooks import StripeHooks, event_types, recovery, retention
from flask_stripe_hooks.extension import get_state
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery, delivery_table, event_table
from flask_stripe_hooks.testing import FakeStripe, build_event, create_endpoint, deliver, new_secret
from flask_stripe_hooks.utils import utcnow

from support.helpers import handled, record, rows

TEST_KEY, LIVE_KEY = "sk_test_recovery51Habc", "sk_live_recovery51Habc"


def invoke(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["stripe-hooks", *args])


def backdate(app: Flask, event_id: str | None, age: timedelta, delivery_id: int | None = None):
    """Make an event (and its deliveries), or one delivery, look ``age`` old."""
    db = app.extensions["sqlalchemy"]
    when = utcnow() - age
    with app.app_context():
        if event_id is not None:
            db.session.execute(
                event_table.update().where(event_table.c.id == event_id).values(received_at=when)
            )
            db.session.execute(
                delivery_table.update()
                .where(delivery_table.c.event_id == event_id)
                .values(received_at=when)
            )
        if delivery_id is not None:
            db.session.execute(
                delivery_table.update()
                .where(delivery_table.c.id == delivery_id)
                .values(received_at=when)
            )
        db.session.commit()


def statuses(app: Flask) -> dict[str, tuple[str, int]]:
    return {e.id: (e.status, e.attempts) for e in rows(app, StripeEvent)}


class Breaker:
    """A handler recording each event, raising for ids in ``broken``."""

    def __init__(self, app: Flask, hooks: StripeHooks, *types: str) -> None:
        self.broken: set[str] = set()
        self.app = app

        @hooks.on(*(types or ("*",)))
        def handler(event: Any, **kwargs: Any) -> None:
            if event.id in self.broken:
                raise RuntimeError(f"cannot handle {event.id}")
            record(current_app, event.id, event.type)  # type: ignore[arg-type]


@pytest.fixture
def queue_mode(app_factory: Any, hooks: StripeHooks) -> tuple[Flask, list[str], Any, Breaker]:
    """An app in queue mode whose queue loses every message (ids kept in ``lost``)."""
    lost: list[str] = []
    app = app_factory(STRIPE_HOOKS_EVENT_CALLBACK=lost.append)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    return app, lost, endpoint, Breaker(app, hooks)


# -- process-pending -------------------------------------------------------------------------


def test_process_pending_sweeps_events_whose_message_was_lost(queue_mode: Any) -> None:
    app, lost, endpoint, breaker = queue_mode
    client = app.test_client()
    old, broken, fresh = (build_event("customer.created") for _ in range(3))
    for item in (old, broken, fresh):
        assert deliver(client, endpoint, item).text == "queued\n"
    backdate(app, old["id"], timedelta(minutes=10))
    backdate(app, broken["id"], timedelta(minutes=6))
    breaker.broken.add(broken["id"])

    dry = invoke(app, "process-pending", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert old["id"] in dry.output and broken["id"] in dry.output
    assert fresh["id"] not in dry.output  # younger than 5m: probably still in the queue
    assert "process-pending: dry run, would process 2" in dry.output
    assert {s for s, _ in statuses(app).values()} == {"pending"} and handled(app) == []

    swept = invoke(app, "process-pending")
    assert swept.exit_code == 1
    assert "process-pending: 1 processed, 1 failed" in swept.stdout
    assert f"{broken['id']}: handler failed" in swept.stdout
    assert "1 of 2 event(s) not processed" in swept.output
    assert "Traceback" not in swept.stdout
    assert statuses(app) == {
        old["id"]: ("processed", 1),
        broken["id"]: ("failed", 1),
        fresh["id"]: ("pending", 0),
    }
    assert handled(app) == [(old["id"], "customer.created")]

    now = invoke(app, "process-pending", "--older-than", "0")
    assert now.exit_code == 0 and "process-pending: 1 processed" in now.stdout
    again = invoke(app, "process-pending", "--older-than", "0")
    assert again.exit_code == 0 and "process-pending: nothing to do" in again.stdout
    assert sorted(i for i, _ in handled(app)) == sorted([old["id"], fresh["id"]])
    assert lost == [old["id"], broken["id"], fresh["id"]]  # each handed to the queue once


def test_process_pending_enqueue(queue_mode: Any, app_factory: Any) -> None:
    app, lost, endpoint, _ = queue_mode
    item = build_event("invoice.paid")
    deliver(app.test_client(), endpoint, item)
    result = invoke(app, "process-pending", "--older-than", "0", "--enqueue")
    assert result.exit_code == 0 and "process-pending: 1 queued" in result.stdout
    assert lost == [item["id"], item["id"]]
    assert statuses(app) == {item["id"]: ("pending", 0)} and handled(app) == []

    inline = app_factory()  # same database, no queue
    refused = invoke(inline, "process-pending", "--older-than", "0", "--enqueue")
    assert refused.exit_code == 1 and "STRIPE_HOOKS_EVENT_CALLBACK" in refused.output


def test_durations_are_checked(app: Flask) -> None:
    for args in (["process-pending", "--older-than", "5x"], ["prune", "--older-than", "-1d"]):
        result = invoke(app, *args)
        assert result.exit_code == 2
        assert "is not a duration; write it as 30s, 5m, 2h or 3d" in result.output


# -- reprocess --failed ------------------------------------------------------------------------


def test_reprocess_failed_with_filters(app: Flask, hooks: StripeHooks, endpoint: Any) -> None:
    breaker = Breaker(app, hooks)
    client = app.test_client()
    paid, created, updated, fine = (
        build_event(t)
        for t in ("invoice.paid", "customer.created", "customer.updated", "customer.deleted")
    )
    breaker.broken |= {paid["id"], created["id"], updated["id"]}
    for item in (paid, created, updated, fine):
        deliver(client, endpoint, item)
    backdate(app, updated["id"], timedelta(days=3))
    assert [s for s, _ in statuses(app).values()].count("failed") == 3
    breaker.broken.clear()  # the bug is fixed

    dry = invoke(app, "reprocess", "--failed", "--type", "customer", "--since", "2d", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert created["id"] in dry.output and "would process 1" in dry.output
    assert updated["id"] not in dry.output and paid["id"] not in dry.output
    assert statuses(app)[created["id"]] == ("failed", 1)

    some = invoke(app, "reprocess", "--failed", "--type", "customer.*", "--since", "2d")
    assert some.exit_code == 0 and "reprocess: 1 processed" in some.stdout
    assert statuses(app)[created["id"]] == ("processed", 2)

    rest = invoke(app, "reprocess", "--failed")
    assert rest.exit_code == 0 and "reprocess: 2 processed" in rest.stdout
    assert {s for s, _ in statuses(app).values()} == {"processed"}
    # Each effect once: the event that never failed did not run again.
    assert sorted(i for i, _ in handled(app)) == sorted(
        e["id"] for e in (paid, created, updated, fine)
    )
    assert "nothing to do" in invoke(app, "reprocess", "--failed").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Give event ids, or --failed for every failed or dead event."),
        (["evt_1", "--failed"], "Give event ids or --failed, not both."),
        (["evt_1", "--since", "2d"], "--since and --type go with --failed."),
        (["--type", "invoice"], "--since and --type go with --failed."),
        (["--since", "2d"], "--since and --type go with --failed."),
        (["--failed", "--enqueue", "--dry-run"], "--enqueue needs queue mode"),
        (["--failed", "--type", "custmer"], "did you mean 'customer'?"),
    ],
)
def test_reprocess_refusals(app: Flask, args: list[str], message: str) -> None:
    result = invoke(app, "reprocess", *args)
    assert result.exit_code == 1 and message in result.output


# -- fetch-missed ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stub_server() -> Iterator[FakeStripe]:
    with FakeStripe(keys={TEST_KEY, LIVE_KEY}) as server:
        yield server


@pytest.fixture
def stub(stub_server: FakeStripe) -> FakeStripe:
    stub_server.reset()
    return stub_server


def api_config(stub: FakeStripe, **more: Any) -> dict[str, Any]:
    return {
        "STRIPE_TEST_SECRET_KEY": TEST_KEY,
        "STRIPE_LIVE_SECRET_KEY": LIVE_KEY,
        "STRIPE_HOOKS_API_BASE": stub.url,
        **more,
    }


def days_ago(days: float) -> int:
    return int(time.time() - days * 86400)


def test_fetch_missed_stores_and_processes_what_never_arrived(
    app_factory: Any, hooks: StripeHooks, stub: FakeStripe
) -> None:
    app = app_factory(**api_config(stub))
    Breaker(app, hooks)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    arrived = stub.add_event(build_event("customer.created", created=days_ago(0.5)))
    deliver(app.test_client(), endpoint, arrived)
    updated = stub.add_event(build_event("customer.updated", created=days_ago(1)))
    paid = stub.add_event(build_event("invoice.paid", created=days_ago(2)))
    stub.add_event(build_event("customer.deleted", created=days_ago(5)))  # before --since
    stub.add_event(build_event("invoice.paid", livemode=True, created=days_ago(1)))
    charges = [
        stub.add_event(build_event("charge.succeeded", created=days_ago(1.5) + i))
        for i in range(130)  # more than one page of 100
    ]

    dry = invoke(app, "fetch-missed", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Stripe listed 133 event(s); 132 not stored here." in dry.output
    assert updated["id"] in dry.output and "would store 132" in dry.output
    assert [e.id for e in rows(app, StripeEvent)] == [arrived["id"]]
    listing = stub.calls("GET")[0]
    assert listing.path == "/v1/events"
    assert int(listing.query["created"]["gte"]) == pytest.approx(days_ago(3), abs=60)

    some = invoke(app, "fetch-missed", "--type", "customer")
    assert some.exit_code == 0, some.output
    assert "Stripe listed 2 event(s); 1 not stored here." in some.stdout
    assert "fetch-missed: 1 processed" in some.stdout
    query = stub.calls("GET")[-1].query
    names = event_types.matching("customer")
    if len(names) > 20:  # Stripe's `types` takes at most 20 names
        assert query["type"] == "customer.*" and "types" not in query
    else:
        assert query["types"] == names

    rest = invoke(app, "fetch-missed")
    assert rest.exit_code == 0, rest.output
    assert "fetch-missed: 131 processed" in rest.stdout
    # Oldest first, each once; the event that did arrive was not run again.
    order = [event_id for event_id, _ in handled(app)]
    assert order == [arrived["id"], updated["id"], paid["id"], *(c["id"] for c in charges)]
    assert {s for s, _ in statuses(app).values()} == {"processed"}
    stored = {e.id: e for e in rows(app, StripeEvent)}
    assert stored[paid["id"]].data == paid["data"] and stored[paid["id"]].endpoint_id is None
    assert rows(app, WebhookDelivery, WebhookDelivery.event_id == paid["id"]) == []

    again = invoke(app, "fetch-missed")
    assert "0 not stored here" in again.stdout and "nothing to do" in again.stdout

    live = invoke(app, "fetch-missed", "--mode", "live")
    assert live.exit_code == 0 and "fetch-missed: 1 processed" in live.stdout
    assert stub.calls("GET")[-1].api_key == LIVE_KEY


def test_fetch_missed_in_queue_mode_and_failures(
    app_factory: Any, hooks: StripeHooks, stub: FakeStripe
) -> None:
    queued: list[str] = []
    app = app_factory(**api_config(stub, STRIPE_HOOKS_EVENT_CALLBACK=queued.append))
    missed = stub.add_event(build_event("customer.created", created=days_ago(1)))
    result = invoke(app, "fetch-missed")
    assert result.exit_code == 0 and "fetch-missed: 1 queued" in result.stdout
    assert queued == [missed["id"]]
    assert statuses(app) == {missed["id"]: ("pending", 0)}

    inline = app_factory(**api_config(stub))
    breaker = Breaker(inline, hooks)
    failing = stub.add_event(build_event("invoice.paid", created=days_ago(1)))
    breaker.broken.add(failing["id"])
    result = invoke(inline, "fetch-missed")
    assert result.exit_code == 1
    assert "fetch-missed: 1 failed" in result.stdout
    assert "reprocess --failed" in result.output
    assert statuses(inline)[failing["id"]] == ("failed", 1)


def test_fetch_missed_errors_name_the_fix(app_factory: Any, stub: FakeStripe) -> None:
    app = app_factory(**api_config(stub))
    too_far = invoke(app, "fetch-missed", "--since", "31d")
    assert too_far.exit_code == 1 and "Stripe keeps events for 30 days" in too_far.output
    bad_type = invoke(app, "fetch-missed", "--type", "invoic")
    assert bad_type.exit_code == 1 and "did you mean 'invoice'?" in bad_type.output
    account = invoke(app, "fetch-missed", "--account", "eu")
    assert account.exit_code == 1 and "No account 'eu' in STRIPE_HOOKS_ACCOUNTS" in account.output

    wrong_key = "sk_test_wrongkey51Hzzz"
    rejected = invoke(
        app_factory(**api_config(stub, STRIPE_TEST_SECRET_KEY=wrong_key)), "fetch-missed"
    )
    assert rejected.exit_code == 1
    assert "Stripe rejected the test secret key; check STRIPE_TEST_SECRET_KEY" in rejected.output
    assert "wrongkey" not in rejected.output and "Traceback" not in rejected.output

    no_live = invoke(
        app_factory(**api_config(stub, STRIPE_LIVE_SECRET_KEY=None)),
        "fetch-missed",
        "--mode",
        "live",
    )
    assert no_live.exit_code == 1 and "set STRIPE_LIVE_SECRET_KEY" in no_live.output

    with FakeStripe(keys={TEST_KEY}) as gone:
        url = gone.url
    down = invoke(app_factory(**api_config(stub, STRIPE_HOOKS_API_BASE=url)), "fetch-missed")
    assert down.exit_code == 1 and "Could not reach the Stripe API" in down.output
    assert rows(app, StripeEvent) == []


# -- prune ---------------------------------------------------------------------------------


def test_prune_keeps_pending_and_optionally_failed(
    app_factory: Any, hooks: StripeHooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "PRUNE_BATCH", 2)  # several batches
    app = app_factory()
    queued = app_factory(STRIPE_HOOKS_EVENT_CALLBACK=lambda event_id: None)
    breaker = Breaker(app, hooks)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    client = app.test_client()
    done, failed, recent = (build_event("customer.created") for _ in range(3))
    breaker.broken.add(failed["id"])
    for item in (done, done, failed, recent):  # done twice: a duplicate delivery too
        deliver(client, endpoint, item)
    pending = build_event("customer.created")
    deliver(queued.test_client(), endpoint, pending)
    deliver(client, endpoint, build_event("customer.created"), secret=new_secret())  # 400
    (rejected,) = rows(app, WebhookDelivery, WebhookDelivery.valid.is_(False))
    for event_id in (done["id"], failed["id"], pending["id"]):
        backdate(app, event_id, timedelta(days=40))
    backdate(app, None, timedelta(days=40), delivery_id=rejected.id)
    backdate(app, recent["id"], timedelta(days=29))

    refused = invoke(app, "prune", "--older-than", "2d")
    assert refused.exit_code == 1 and "Use --older-than 3d or more." in refused.output

    dry = invoke(app, "prune", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "prune: would delete 4 delivery(ies) and 2 event(s) received more than 30d ago" in (
        dry.stdout
    )
    assert len(rows(app, WebhookDelivery)) == 6

    kept = invoke(app, "prune", "--keep-failed")
    assert kept.exit_code == 0, kept.output
    assert "prune: deleted 3 delivery(ies) and 1 event(s)" in kept.stdout
    assert set(statuses(app)) == {failed["id"], pending["id"], recent["id"]}

    rest = invoke(app, "prune")
    assert "prune: deleted 1 delivery(ies) and 1 event(s)" in rest.stdout
    assert set(statuses(app)) == {pending["id"], recent["id"]}
    assert sorted(d.event_id for d in rows(app, WebhookDelivery)) == sorted(
        [pending["id"], recent["id"]]
    )
    assert "deleted 0 delivery(ies) and 0 event(s)" in invoke(app, "prune").stdout


# -- admin helpers -------------------------------------------------------------------------


def test_counts(queue_mode: Any) -> None:
    app, _, endpoint, breaker = queue_mode
    items = [build_event("customer.created") for _ in range(4)]
    for item in items:
        deliver(app.test_client(), endpoint, item)
    breaker.broken.add(items[0]["id"])
    backdate(app, items[3]["id"], timedelta(days=2))
    with app.app_context():
        state = get_state()
        recovery.process_events(state, [items[0]["id"], items[1]["id"]])
        assert recovery.counts(state) == {
            "pending": 2,
            "failed": 1,
            "processed": 1,
            "retrying": 0,
            "ignored": 0,
            "dead": 0,
            "twin": 0,
            "shadow": 0,
            "last_24h": 3,
            "failed_24h": 1,
        }


def test_process_again_enqueues_in_queue_mode(queue_mode: Any, app_factory: Any) -> None:
    app, lost, endpoint, breaker = queue_mode
    item = build_event("customer.created")
    deliver(app.test_client(), endpoint, item)
    with app.app_context():
        state = get_state()
        recovery.process_events(state, [item["id"]])
        assert statuses(app)[item["id"]] == ("processed", 1)
        result = recovery.process_again(state, item["id"])
        assert result.outcome == "queued"
        assert recovery.process_again(state, "evt_missing").outcome == "missing"
    assert lost == [item["id"], item["id"]]
    assert statuses(app)[item["id"]] == ("pending", 1)  # the worker runs it again
    assert len(handled(app)) == 1

    inline = app_factory()  # no queue: runs now, even though processed
    with inline.app_context():
        recovery.process_events(get_state(), [item["id"]])
        assert recovery.process_again(get_state(), item["id"]).outcome == "processed"
    assert len(handled(app)) == 3
    assert statuses(app)[item["id"]] == ("processed", 3)


def test_admin_shows_counts_and_queues_process_again(app_factory: Any, hooks: StripeHooks) -> None:
    import re

    queued: list[str] = []
    app = app_factory(
        STRIPE_HOOKS_ADMIN_AUTH=lambda: True, STRIPE_HOOKS_EVENT_CALLBACK=queued.append
    )
    breaker = Breaker(app, hooks)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    client = app.test_client()
    items = [build_event("customer.created") for _ in range(3)]
    for item in items:
        deliver(client, endpoint, item)
    breaker.broken.add(items[0]["id"])
    with app.app_context():
        recovery.process_events(get_state(), [items[0]["id"]])

    page = client.get("/stripe-hooks/admin/events/")
    assert page.status_code == 200
    counts = re.sub(r"<[^>]+>|\s+", " ", page.text.split('id="event-counts">')[1].split("</p>")[0])
    assert " ".join(counts.split()) == (
        "Pending (queued): 2 · Failed: 1 · Last 24 h: 3 received, 1 failed"
    )

    detail = client.get(f"/stripe-hooks/admin/events/{items[0]['id']}")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', detail.text).group(1)
    response = client.post(
        f"/stripe-hooks/admin/events/{items[0]['id']}/process",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert f"Event {items[0]['id']} queued to be processed again by a worker." in response.text
    assert queued == [i["id"] for i in items] + [items[0]["id"]]
    assert statuses(app)[items[0]["id"]] == ("pending", 1)  # for the worker; nothing ran here
    assert handled(app) == []
