"""Connect platforms: every event reaches Stripe as the account it happened in.

Stripe's API is ``flask_stripe_hooks.testing.FakeStripe``, reached by the real stripe-python
through ``STRIPE_HOOKS_API_BASE``. As on Stripe, an object of a connected account is
``404 No such subscription`` to a request without that account's ``Stripe-Account``, so a
handler that fetches as the platform fails here as it would in production. Every app-level
test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import stripe
from flask import Flask
from flask_stripe_hooks import stripe_api
from flask_stripe_hooks.models import StripeEvent, event_table
from flask_stripe_hooks.pipeline import run
from flask_stripe_hooks.testing import (
    FakeStripe,
    build_event,
    build_thin_event,
    create_endpoint,
    deliver,
    random_id,
)
from flask_stripe_hooks.utils import utcnow

from support.admin_support import ADMIN, allow
from support.helpers import rows

PLATFORM_KEY, ORG_KEY = "sk_test_platform", "sk_org_test_org"
CONNECTED, OTHER, GONE = "acct_1Conn", "acct_2Conn", "acct_9Gone"
PLATFORM_ID = "acct_1FakePlatform"
API_VERSION = "2025-03-31.basil"
UPDATED = "customer.subscription.updated"


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeStripe]:
    with FakeStripe(platform=PLATFORM_ID, connected={CONNECTED, OTHER}) as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeStripe) -> FakeStripe:
    fake_server.reset()
    return fake_server


def settings(fake: FakeStripe, **more: Any) -> dict[str, Any]:
    return {
        "STRIPE_TEST_SECRET_KEY": PLATFORM_KEY,
        "STRIPE_API_VERSION": API_VERSION,
        "STRIPE_HOOKS_API_BASE": fake.url,
        "STRIPE_HOOKS_ADMIN_AUTH": allow,
        "STRIPE_HOOKS_ACCOUNTS": {
            "org": {"test_secret_key": ORG_KEY, "stripe_context": PLATFORM_ID},
            "org-bare": {"test_secret_key": ORG_KEY},
        },
        **more,
    }


@pytest.fixture
def app(app_factory: Any, fake: FakeStripe) -> Flask:
    return app_factory(**settings(fake))  # type: ignore[no-any-return]


def endpoint(app: Flask, **fields: Any) -> Any:
    with app.app_context():
        return create_endpoint(app.extensions["sqlalchemy"], **fields)


def subscription(fake: FakeStripe, account: str = "", status: str = "canceled") -> str:
    """A subscription on the fake, of ``account`` (the platform's own without one)."""
    sub_id = random_id("sub")
    obj = {"id": sub_id, "object": "subscription", "status": status, "livemode": False}
    fake.add_object(f"/v1/subscriptions/{sub_id}", obj, account=account)
    return sub_id


def gets(fake: FakeStripe, prefix: str = "/v1/subscriptions/") -> list[Any]:
    return [r for r in fake.calls("GET") if r.path.startswith(prefix)]


ACCOUNTS = pytest.mark.parametrize("account", [CONNECTED, ""], ids=["connected", "platform"])


# -- the fake is Stripe: a connected account's object is not the platform's ----------------------


def test_the_fake_hides_a_connected_accounts_objects_from_the_platform(fake):
    sub_id = subscription(fake, CONNECTED)
    client = stripe.StripeClient(PLATFORM_KEY, base_addresses={"api": fake.url})
    with pytest.raises(stripe.InvalidRequestError, match=f"No such subscription: '{sub_id}'"):
        client.v1.subscriptions.retrieve(sub_id)
    mine = client.v1.subscriptions.retrieve(sub_id, options={"stripe_account": CONNECTED})
    assert mine.status == "canceled"
    with pytest.raises(stripe.InvalidRequestError, match="No such subscription"):
        client.v1.subscriptions.retrieve(sub_id, options={"stripe_account": OTHER})
    with pytest.raises(stripe.PermissionError, match=f"does not have access to account '{GONE}'"):
        client.v1.subscriptions.retrieve(sub_id, options={"stripe_account": GONE})
    org = stripe.StripeClient(ORG_KEY, base_addresses={"api": fake.url})
    with pytest.raises(stripe.InvalidRequestError, match="must include a Stripe-Context"):
        org.v1.subscriptions.retrieve(sub_id)
    path = f"{PLATFORM_ID}/{CONNECTED}"
    assert org.v1.subscriptions.retrieve(sub_id, options={"stripe_context": path}).id == sub_id


def test_build_event_makes_connect_events():
    event = build_event(UPDATED, account=CONNECTED)
    assert event["account"] == CONNECTED and event["data"]["object"]["object"] == "subscription"
    assert "account" not in build_event(UPDATED)


def test_a_test_event_for_a_connect_endpoint_comes_from_a_connected_account(app, hooks, fake):
    got: list[str] = []
    hooks.on("customer.created")(lambda event, **kw: got.append(event.account))
    connect, own = endpoint(app, connect=True, account="org"), endpoint(app, account="org")
    for ep in (connect, own):
        args = ("send-test-event", "customer.created", "--endpoint", str(ep.uuid))
        assert cli(app, *args).exit_code == 0
    assert re.fullmatch(r"acct_[0-9a-f]{24}", got[0]) and got[1] == ""  # never the name "org"


# -- handlers reach Stripe as the event's account ------------------------------------------------


@ACCOUNTS
def test_fetch_object_asks_stripe_as_the_events_account(app, hooks, fake, account):
    got: list[Any] = []
    hooks.on(UPDATED)(lambda event, **kw: got.append(event.fetch_object()))
    sub_id = subscription(fake, account)
    item = build_event(UPDATED, {"id": sub_id, "status": "active"}, account=account or None)
    response = deliver(app.test_client(), endpoint(app, connect=bool(account)), item)
    assert response.status_code == 200, response.text
    assert got[0].id == sub_id and got[0].status == "canceled"  # as it is now on Stripe
    (call,) = gets(fake)
    assert call.api_key == PLATFORM_KEY  # the platform's key, always
    assert call.headers.get("Stripe-Account") == (account or None)
    assert "Stripe-Context" not in call.headers


def test_without_the_binding_a_connected_object_is_not_found(app, hooks, fake, monkeypatch):
    """What every platform hit before (dj-stripe #740, #1281, #1584, #2010): the object is
    asked for as the platform, and Stripe answers 404. The test above catches it."""
    monkeypatch.setattr(
        run,
        "client_as",
        lambda state, **kw: stripe_api.client_for(
            state, account=kw["account"], livemode=kw["livemode"]
        ),
    )
    hooks.on(UPDATED)(lambda event, **kw: event.fetch_object())
    sub_id = subscription(fake, CONNECTED)
    item = build_event(UPDATED, {"id": sub_id}, account=CONNECTED)
    assert deliver(app.test_client(), endpoint(app, connect=True), item).status_code == 500
    (stored,) = rows(app, StripeEvent)
    assert stored.status == "failed" and "No such subscription" in stored.last_error
    assert "Stripe-Account" not in gets(fake)[0].headers


@ACCOUNTS
def test_every_call_through_event_client_carries_the_account(app, hooks, fake, account):
    sub_id = subscription(fake, account)
    theirs = fake.add_event(build_event("customer.created", account=account or None))
    fake.add_event(build_event("customer.created", account=OTHER if account else CONNECTED))
    got: dict[str, Any] = {}

    @hooks.on(UPDATED)
    def handler(event: Any, **kwargs: Any) -> None:
        client = event.client()
        got["status"] = client.v1.subscriptions.retrieve(sub_id).status
        got["events"] = [e.id for e in client.v1.events.list({"limit": 10}).data]
        got["same"] = event.client() is client

    item = build_event(UPDATED, {"id": sub_id}, account=account or None)
    assert deliver(app.test_client(), endpoint(app), item).status_code == 200
    assert got == {"status": "canceled", "events": [theirs["id"]], "same": True}
    calls = fake.calls("GET")
    assert [c.path for c in calls] == [f"/v1/subscriptions/{sub_id}", "/v1/events"]
    assert {c.headers.get("Stripe-Account") for c in calls} == {account or None}
    assert {c.api_key for c in calls} == {PLATFORM_KEY}


@ACCOUNTS
def test_latest_only_and_a_stale_events_fetch_use_the_account(app, hooks, fake, account):
    """Out of order: the newer event runs the ``latest_only`` handler, which fetches the
    object; the older one arrives after it, is stale, and its plain handler refreshes from
    Stripe instead of applying old data. Every fetch is made as the event's account."""
    kept: list[tuple[str, str]] = []
    refreshed: list[str] = []

    @hooks.on("customer.subscription", latest_only=True)
    def newest(event: Any, **kwargs: Any) -> None:
        kept.append((event.id, event.fetch_object().status))

    @hooks.on(UPDATED)
    def every(event: Any, **kwargs: Any) -> None:
        if event.is_stale:
            refreshed.append(event.fetch_object().status)

    sub_id = subscription(fake, account)
    now = int(utcnow().timestamp())
    older, newer = (
        build_event(UPDATED, {"id": sub_id}, account=account or None, created=now - 60 + i * 30)
        for i in range(2)
    )
    client, ep = app.test_client(), endpoint(app, connect=bool(account))
    assert deliver(client, ep, newer).status_code == 200
    assert deliver(client, ep, older).status_code == 200
    assert kept == [(newer["id"], "canceled")] and refreshed == ["canceled"]
    stale = {e.id: e.stale for e in rows(app, StripeEvent)}
    assert stale[older["id"]]["newer_event_id"] == newer["id"] and stale[newer["id"]] is None
    calls = gets(fake)
    assert len(calls) == 2  # one fetch per delivery
    assert {c.headers.get("Stripe-Account") for c in calls} == {account or None}


def test_a_stored_event_is_run_later_as_its_account(app_factory, hooks, fake):
    """Queue mode and ``reprocess``: the event is rebuilt from its row, and still reaches
    Stripe as its connected account (its ``context`` kept too)."""
    queued: list[str] = []
    app = app_factory(**settings(fake, STRIPE_HOOKS_EVENT_CALLBACK=queued.append))
    got: list[str] = []
    hooks.on(UPDATED)(lambda event, **kw: got.append(event.fetch_object().status))
    sub_id = subscription(fake, CONNECTED)
    context = f"{PLATFORM_ID}/{CONNECTED}"
    item = build_event(UPDATED, {"id": sub_id}, account=CONNECTED)
    item["context"] = context
    response = deliver(app.test_client(), endpoint(app, connect=True), item)
    assert response.text.strip() == "queued" and queued == [item["id"]]
    with app.app_context():
        assert hooks.process_stored(item["id"]).outcome == "processed"
    (stored,) = rows(app, StripeEvent)
    assert (stored.account, stored.context) == (CONNECTED, context)
    reprocessed = app.test_cli_runner().invoke(args=["stripe-hooks", "reprocess", item["id"]])
    assert reprocessed.exit_code == 0, reprocessed.output
    assert got == ["canceled", "canceled"]
    assert [c.headers.get("Stripe-Account") for c in gets(fake)] == [CONNECTED, CONNECTED]


# -- thin events and Organizations: Stripe-Context -----------------------------------------------


def test_a_thin_event_keeps_its_context_on_every_call(app, hooks, fake):
    meter_id = random_id("mtr")
    related = {"id": meter_id, "type": "billing.meter", "url": f"/v1/billing/meters/{meter_id}"}
    meter = {"id": meter_id, "object": "billing.meter", "display_name": "API calls"}
    fake.add_object(related["url"], meter, account=CONNECTED)
    notification = build_thin_event(
        "v1.billing.meter.error_report_triggered", related_object=related, context=CONNECTED
    )
    got: list[str] = []

    @hooks.on("v1.billing.meter")
    def handler(event: Any, **kwargs: Any) -> None:
        got.append(event.fetch_related_object().display_name)
        got.append(event.client().v1.billing.meters.retrieve(meter_id).display_name)

    ep = endpoint(app, payload="thin", connect=True)
    assert deliver(app.test_client(), ep, notification).status_code == 200
    assert got == ["API calls", "API calls"]
    calls = gets(fake, "/v1/billing/meters/")
    assert [c.headers.get("Stripe-Context") for c in calls] == [CONNECTED, CONNECTED]
    assert not any("Stripe-Account" in c.headers for c in calls)


@pytest.mark.parametrize(
    ("account", "context", "sent"),
    [
        (CONNECTED, f"{PLATFORM_ID}/{CONNECTED}", f"{PLATFORM_ID}/{CONNECTED}"),  # as sent
        (CONNECTED, "", f"{PLATFORM_ID}/{CONNECTED}"),  # an older API version: made from both
        ("", "", PLATFORM_ID),  # the platform's own event: the account's stripe_context
    ],
    ids=["event context", "no context", "platform"],
)
def test_an_organization_key_sends_stripe_context(app, hooks, fake, account, context, sent):
    got: list[str] = []
    hooks.on(UPDATED)(lambda event, **kw: got.append(event.fetch_object().status))
    sub_id = subscription(fake, account)
    item = build_event(UPDATED, {"id": sub_id}, account=account or None)
    if context:
        item["context"] = context
    ep = endpoint(app, account="org", connect=bool(account))
    assert deliver(app.test_client(), ep, item).status_code == 200
    assert got == ["canceled"]
    (call,) = gets(fake)
    assert call.api_key == ORG_KEY and call.headers["Stripe-Context"] == sent
    assert "Stripe-Account" not in call.headers


def test_an_organization_key_without_a_context_names_the_setting(app, hooks, fake):
    hooks.on(UPDATED)(lambda event, **kw: event.fetch_object())
    item = build_event(UPDATED, {"id": subscription(fake, CONNECTED)}, account=CONNECTED)
    ep = endpoint(app, account="org-bare", connect=True)
    assert deliver(app.test_client(), ep, item).status_code == 500
    (stored,) = rows(app, StripeEvent)
    assert "STRIPE_HOOKS_ACCOUNTS['org-bare']['stripe_context']" in stored.last_error
    assert fake.requests == []  # refused here, before asking Stripe


# -- backfill per connected account --------------------------------------------------------------


def cli(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=["stripe-hooks", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def on_stripe(fake: FakeStripe, account: str = "", n: int = 1) -> list[str]:
    """``n`` events Stripe keeps for ``account``, not delivered here."""
    return [
        fake.add_event(build_event("customer.created", account=account or None))["id"]
        for _ in range(n)
    ]


def stored_accounts(app: Flask) -> dict[str, str]:
    return {e.id: e.account for e in rows(app, StripeEvent)}


def test_fetch_missed_reads_each_connected_account_as_itself(app, hooks, fake):
    seen: list[tuple[str, str]] = []
    hooks.on("customer.created")(lambda event, **kw: seen.append((event.id, event.account)))
    platform = on_stripe(fake)
    mine = on_stripe(fake, CONNECTED, 2)
    theirs = on_stripe(fake, OTHER)
    delivered = build_event("customer.created", account=CONNECTED)
    fake.add_event(delivered)
    assert deliver(app.test_client(), endpoint(app, connect=True), delivered).status_code == 200

    result = cli(app, "fetch-missed", "--connected-account", CONNECTED)
    assert result.exit_code == 0, result.output
    assert f"{CONNECTED}: Stripe listed 3 event(s); 2 not stored here." in result.output
    assert "fetch-missed: 2 processed" in result.output
    assert sorted(seen[1:]) == sorted((i, CONNECTED) for i in mine)
    (listing,) = fake.calls("GET")
    assert listing.path == "/v1/events" and listing.headers["Stripe-Account"] == CONNECTED
    assert listing.api_key == PLATFORM_KEY
    assert platform[0] not in stored_accounts(app) and theirs[0] not in stored_accounts(app)


def test_fetch_missed_all_connected_covers_the_accounts_seen(app, hooks, fake):
    hooks.on("customer.created")(lambda event, **kw: None)
    platform = on_stripe(fake)
    mine, theirs = on_stripe(fake, CONNECTED), on_stripe(fake, OTHER, 2)
    client, ep = app.test_client(), endpoint(app, connect=True)
    for account in (CONNECTED, OTHER):  # each account has an event stored here
        item = build_event("customer.created", account=account)
        assert deliver(client, ep, item).status_code == 200

    dry = cli(app, "fetch-missed", "--all-connected", "--dry-run")
    assert f"{CONNECTED}: Stripe listed 1 event(s); 1 not stored here." in dry.output
    assert f"{OTHER}: Stripe listed 2 event(s); 2 not stored here." in dry.output
    assert f"  {mine[0]}  customer.created  {CONNECTED}  " in dry.output
    assert "fetch-missed: dry run, would store 3" in dry.output
    done = cli(app, "fetch-missed", "--all-connected")
    assert done.exit_code == 0 and "fetch-missed: 3 processed" in done.output
    stored = stored_accounts(app)
    assert {i: stored[i] for i in mine + theirs} == {
        mine[0]: CONNECTED,
        theirs[0]: OTHER,
        theirs[1]: OTHER,
    }
    assert platform[0] not in stored
    listings = [c for c in fake.calls("GET") if c.path == "/v1/events"]
    assert {c.headers.get("Stripe-Account") for c in listings} == {CONNECTED, OTHER}


def test_fetch_missed_undelivered_for_a_connected_account(app, hooks, fake):
    hooks.on("customer.created")(lambda event, **kw: None)
    failing = on_stripe(fake, CONNECTED)  # pending_webhooks=1: Stripe is still retrying it
    fine = build_event("customer.created", account=CONNECTED)
    fake.add_event({**fine, "pending_webhooks": 0})  # delivered everywhere
    result = cli(app, "fetch-missed", "--undelivered", "--connected-account", CONNECTED)
    assert result.exit_code == 0, result.output
    assert f"{CONNECTED}: Stripe listed 1 undelivered event(s); 1 not stored" in result.output
    assert set(stored_accounts(app)) == set(failing)
    (listing,) = fake.calls("GET")
    assert listing.query["delivery_success"] == "false"
    assert listing.headers["Stripe-Account"] == CONNECTED


def test_fetch_missed_goes_on_past_an_account_stripe_refuses(app, hooks, fake):
    hooks.on("customer.created")(lambda event, **kw: None)
    mine = on_stripe(fake, CONNECTED)
    args = ["fetch-missed", "--connected-account", GONE, "--connected-account", CONNECTED]
    result = cli(app, *args)
    assert result.exit_code == 1
    assert f"{GONE}: Stripe refused to act as {GONE}" in result.output
    assert f"{CONNECTED}: Stripe listed 1 event(s); 1 not stored here." in result.output
    assert "1 connected account(s) could not be read" in result.output
    assert set(stored_accounts(app)) == set(mine)


def test_fetch_missed_refuses_bad_account_options(app, fake):
    bad = cli(app, "fetch-missed", "--connected-account", "cus_123")
    assert bad.exit_code == 2 and "'cus_123' is not a Stripe account id (acct_...)" in bad.output
    both = cli(app, "fetch-missed", "--connected-account", CONNECTED, "--all-connected")
    assert both.exit_code == 1 and "not both" in both.output
    none = cli(app, "fetch-missed", "--all-connected")
    assert none.exit_code == 0 and "No test-mode event of a connected account" in none.output
    assert fake.requests == []


# -- one account's events: the admin and the CLI -------------------------------------------------


def seed(app: Flask, n: int = 5) -> dict[str, list[str]]:
    """``n`` events of each of two connected accounts and of the platform, delivered."""
    client, ep = app.test_client(), endpoint(app, connect=True)
    ids: dict[str, list[str]] = {CONNECTED: [], OTHER: [], "": []}
    for _ in range(n):
        for account in ids:
            item = build_event("customer.created", account=account or None)
            assert deliver(client, ep, item).status_code == 200
            ids[account].append(item["id"])
    return ids


def test_the_admin_lists_one_accounts_events(app, fake):
    ids = seed(app, 3)
    client = app.test_client()
    page = client.get(f"{ADMIN}/events/?account={CONNECTED}")
    assert page.status_code == 200
    listed = re.findall(r'/events/(evt_[0-9a-f]+)"', page.text)
    assert sorted(listed) == sorted(ids[CONNECTED])
    assert f'value="{CONNECTED}"' in page.text  # the filter keeps its value
    everything = client.get(f"{ADMIN}/events/").text
    assert all(i in everything for i in ids[OTHER] + ids[""])
    bad = client.get(f"{ADMIN}/events/?account=cus_1")
    assert bad.status_code == 400 and "Not a Stripe account id (acct_...)." in bad.text

    detail = client.get(f"{ADMIN}/events/{ids[CONNECTED][0]}").text
    link = html.escape(f"{ADMIN}/events/?account={CONNECTED}")
    assert re.search(rf'id="event-account"><a href="{re.escape(link)}"><code>{CONNECTED}<', detail)
    assert "— (the endpoint's own)" in client.get(f"{ADMIN}/events/{ids[''][0]}").text


def test_the_cli_pages_through_one_accounts_events(app, fake):
    ids = seed(app, 5)
    newest_first = ids[CONNECTED][::-1]
    seen: list[str] = []
    args = ["events", "--account", CONNECTED, "--limit", "2"]
    while True:
        result = cli(app, *args)
        assert result.exit_code == 0, result.output
        seen += re.findall(r"^(evt_\w+)\s", result.output, re.M)
        assert all(f" {CONNECTED} " in line for line in result.output.splitlines()[1:3])
        more = re.search(r"5 match; older ones: --before (\S+)$", result.output, re.M)
        if more is None:
            break
        args = ["events", "--account", CONNECTED, "--limit", "2", "--before", more.group(1)]
    assert seen == newest_first
    bad = cli(app, "events", "--account", CONNECTED, "--before", "yesterday")
    assert bad.exit_code == 1 and "This page link is not valid" in bad.output
    wrong = cli(app, "events", "--account", "everyone")
    assert wrong.exit_code == 2 and "not a Stripe account id" in wrong.output


def test_the_account_filter_reads_its_index(app, fake, database_url):
    """The account filter with its order is one index range: a page costs the same with a
    million events as with a thousand (bench/connect.py has the figures)."""
    from support.history_support import fill

    db = app.extensions["sqlalchemy"]
    with app.app_context():
        endpoint_id = int(create_endpoint(db).id)
        with db.engine.begin() as conn:
            fill(conn, 20000, newest=utcnow() - timedelta(minutes=1), endpoint_id=endpoint_id)
            fill(conn, 40, newest=utcnow(), endpoint_id=endpoint_id, prefix="evt_c", accounts=4)
    query = (
        sa.select(event_table)
        .where(event_table.c.account == "acct_h1")
        .order_by(event_table.c.received_at.desc(), event_table.c.id.desc())
        .limit(51)
    )
    postgres = database_url.startswith("postgresql")
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(sa.text("ANALYZE stripe_hooks_event" if postgres else "ANALYZE"))
        sql = query.compile(conn, compile_kwargs={"literal_binds": True})
        explain = "EXPLAIN" if postgres else "EXPLAIN QUERY PLAN"
        plan = "\n".join(str(r[-1]) for r in conn.execute(sa.text(f"{explain} {sql}")))
        found = conn.execute(query).all()
    assert "ix_stripe_hooks_event_account_received" in plan, plan
    assert "Seq Scan" not in plan and "TEMP B-TREE" not in plan, plan
    assert len(found) == 10 and {r.account for r in found} == {"acct_h1"}


def test_metrics_name_no_account(app_factory, hooks, fake):
    """Account ids stay out of the metrics: a platform has one per seller, each label
    value a time series of its own (docs/connect.md)."""
    from flask_stripe_hooks.metrics import init_metrics
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    app = app_factory(**settings(fake))
    init_metrics(app, registry)
    hooks.on("customer.created")(lambda event, **kw: None)
    item = build_event("customer.created", account=CONNECTED)
    assert deliver(app.test_client(), endpoint(app, connect=True), item).status_code == 200
    scrape = generate_latest(registry).decode()
    assert re.search(r'stripe_hooks_events_total\{[^}]*type="customer.created"', scrape)
    assert "acct_" not in scrape and "account" not in scrape


def test_the_docs_example_passes(tmp_path):
    """docs/connect.md's test, run by pytest as a user runs it."""
    page = (Path(__file__).parents[1] / "docs" / "connect.md").read_text()
    (code,) = re.findall(
        r"^```python\n# tests/test_seller_subscriptions.py\n(.*?)^```", page, re.S | re.M
    )
    (tmp_path / "test_seller_subscriptions.py").write_text(code)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
