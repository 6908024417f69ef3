"""``migrate-to-thin``: the guided move of a snapshot endpoint to thin events (a mirroring
thin destination on ``FakeStripe``, a shadow phase whose handler writes are rolled back,
cutover with the twins rule, retirement of the snapshot endpoint), and what ``doctor`` says
at each step. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask_stripe_hooks.models import AuditEntry, StripeEvent, WebhookEndpoint
from flask_stripe_hooks.testing import (
    FakeStripe,
    build_event,
    build_thin_twin,
    deliver,
)

from support.helpers import handled, record, rows

KEY = "sk_test_stub"
BASE = "https://shop.example.com"
ALONE = "customer.source.created"  # a snapshot type with no thin twin


@pytest.fixture
def app(stub_app: Flask) -> Flask:
    return stub_app


def cli(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=["stripe-hooks", *args])
    assert "Traceback" not in result.output
    return result


def doctor(app: Flask) -> dict[str, Any]:
    result = cli(app, "doctor", "--json")
    return {f["code"]: f for f in json.loads(result.output)["findings"]}


@pytest.fixture
def snapshot(app: Flask, stub: FakeStripe) -> WebhookEndpoint:
    events = ["--events", "customer.created", "--events", "invoice.paid", "--events", ALONE]
    result = cli(app, "create-endpoint", "--base-url", BASE, *events)
    assert result.exit_code == 0, result.output
    (endpoint,) = rows(app, WebhookEndpoint)
    return endpoint


def the_thin(app: Flask) -> WebhookEndpoint:
    (thin,) = rows(app, WebhookEndpoint, WebhookEndpoint.payload == "thin")
    return thin


def secret_of(stub: FakeStripe, endpoint: WebhookEndpoint) -> str:
    return stub.secrets[endpoint.stripe_id]


def test_the_guided_move_from_snapshot_to_thin_events(app, hooks, snapshot, stub):
    calls: list[str] = []

    @hooks.on("customer.created")
    def snapshot_handler(event: Any, **kwargs: Any) -> None:
        record(app, event.id, "snapshot")

    # 1. start: a thin destination mirroring the snapshot endpoint's types.
    stub.requests.clear()
    result = cli(app, "migrate-to-thin", str(snapshot.uuid))
    assert result.exit_code == 0, result.output
    thin = the_thin(app)
    (create,) = stub.calls("POST")
    assert create.path == "/v2/core/event_destinations"
    assert create.json["enabled_events"] == ["v1.customer.created", "v1.invoice.paid"]
    assert create.json["webhook_endpoint"]["url"] == f"{BASE}/stripe/webhook/{thin.uuid}/"
    assert thin.migration == {"from": str(snapshot.uuid), "phase": "shadow"}
    assert f"Created thin endpoint {thin.uuid}, mirroring {snapshot.uuid}" in result.output
    assert f"Types with no thin twin (they stay on snapshot events): {ALONE}." in result.output
    assert f"Next: flask stripe-hooks migrate-to-thin {snapshot.uuid} --cutover" in result.output
    again = cli(app, "migrate-to-thin", str(snapshot.uuid))  # tells where it stands
    assert "Created" not in again.output and ": shadow." in again.output
    assert len(stub.calls("POST")) == 1

    # 2. shadow: thin events are verified and stored; their handlers' writes roll back.
    @hooks.on("v1.customer.created")
    def thin_handler(event: Any, **kwargs: Any) -> None:
        record(app, event.id, "thin")
        hooks.on_commit(lambda: calls.append(event.id))
        if event.shadow and event.related_object["id"] == "cus_broken":
            raise RuntimeError("thin handler not ready")

    client = app.test_client()
    event = build_event("customer.created")
    twin = build_thin_twin(event)
    response = deliver(client, thin, twin, secret=secret_of(stub, thin))
    assert (response.status_code, response.text.strip()) == (
        200,
        "shadow: handlers ran, their writes rolled back",
    )
    assert deliver(client, snapshot, event, secret=secret_of(stub, snapshot)).status_code == 200
    assert handled(app) == [(event["id"], "snapshot")] and calls == []  # no on_commit either
    stored = {e.id: (e.status, e.twin_id) for e in rows(app, StripeEvent)}
    assert stored == {twin["id"]: ("shadow", event["id"]), event["id"]: ("processed", None)}

    broken = build_thin_twin(build_event("customer.created", {"id": "cus_broken"}))
    response = deliver(client, thin, broken, secret=secret_of(stub, thin))
    assert (response.status_code, response.text.strip()) == (200, "shadow: a handler failed")
    (failed,) = rows(app, StripeEvent, StripeEvent.id == broken["id"])
    assert failed.status == "shadow" and "thin handler not ready" in failed.last_error

    found = doctor(app)
    assert (
        "2 thin event(s) in shadow, 1 with their snapshot twin here, 1 failed"
        in (found["migration"]["message"])
    )
    assert found["shadow-failures"]["severity"] == "warning"
    result = cli(app, "migrate-to-thin", str(snapshot.uuid), "--cutover")
    assert result.exit_code == 1 and "1 thin event(s) failed in their handlers" in result.output
    assert the_thin(app).migration["phase"] == "shadow"

    # 3. cutover: thin events run for real; each business event runs once.
    result = cli(app, "migrate-to-thin", str(snapshot.uuid), "--cutover", "--force")
    assert result.exit_code == 0, result.output
    assert ": cutover." in result.output and "--retire" in result.output
    thin_first = build_event("customer.created")
    twin = build_thin_twin(thin_first)
    assert deliver(client, thin, twin, secret=secret_of(stub, thin)).text.strip() == "processed"
    late = deliver(client, snapshot, thin_first, secret=secret_of(stub, snapshot))
    assert late.status_code == 200 and late.text.strip().startswith("twin of")
    assert handled(app)[-1] == (twin["id"], "thin") and len(handled(app)) == 2
    assert (
        "1 event(s) ran through thin events, 0 through their snapshot twin"
        in (doctor(app)["migration"]["message"])
    )

    # 4. retire: the snapshot endpoint is disabled, on Stripe and here.
    result = cli(app, "migrate-to-thin", str(snapshot.uuid), "--retire")
    assert result.exit_code == 0, result.output
    assert stub.endpoints[snapshot.stripe_id]["status"] == "disabled"
    (old,) = rows(app, WebhookEndpoint, WebhookEndpoint.id == snapshot.id)
    assert old.status == "disabled" and the_thin(app).migration["phase"] == "done"
    assert "delete-endpoint" in doctor(app)["migration"]["fix"]
    actions = [a.changes for a in rows(app, AuditEntry) if a.action == "migration"]
    assert actions == [{"phase": ["shadow", "cutover"]}, {"phase": ["cutover", "done"]}]


def test_cutover_waits_for_a_thin_handler_of_each_handled_type(app, hooks, snapshot, stub):
    hooks.on("customer")(lambda event, **kw: None)  # snapshot: customer.*
    cli(app, "migrate-to-thin", str(snapshot.uuid))
    found = doctor(app)
    assert "customer.created → v1.customer.created" in found["thin-handler-missing"]["message"]
    result = cli(app, "migrate-to-thin", str(snapshot.uuid), "--cutover", "--force")
    assert result.exit_code == 1
    assert "Handlers listen to customer.created (no handler of v1.customer.created)" in (
        result.output
    )
    hooks.on("v1.customer")(lambda event, **kw: None)
    assert cli(app, "migrate-to-thin", str(snapshot.uuid), "--cutover").exit_code == 0
    assert "thin-handler-missing" not in doctor(app)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (["--cutover"], "is not being moved to thin events; start with"),
        (["--retire"], "is not being moved to thin events"),
        (["--cutover", "--retire"], "Choose one step"),
    ],
)
def test_steps_out_of_order_are_refused(app, snapshot, stub, step, message):
    stub.requests.clear()
    result = cli(app, "migrate-to-thin", str(snapshot.uuid), *step)
    assert result.exit_code == 1 and message in result.output
    assert stub.calls("POST") == []


def test_retire_before_cutover_names_the_next_step(app, snapshot, stub):
    cli(app, "migrate-to-thin", str(snapshot.uuid))
    result = cli(app, "migrate-to-thin", str(snapshot.uuid), "--retire")
    assert result.exit_code == 1
    step = f"flask stripe-hooks migrate-to-thin {snapshot.uuid} --cutover"
    assert f"in the shadow phase, not cutover; next: {step}" in result.output
    assert stub.endpoints[snapshot.stripe_id]["status"] == "enabled"


def test_a_thin_endpoint_or_types_without_twins_cannot_be_moved(app, snapshot, stub):
    cli(app, "migrate-to-thin", str(snapshot.uuid))
    thin = the_thin(app)
    result = cli(app, "migrate-to-thin", str(thin.uuid))
    assert result.exit_code == 1 and "receives thin events already" in result.output
    result = cli(app, "create-endpoint", "--base-url", BASE, "--events", ALONE)
    (lonely,) = [e for e in rows(app, WebhookEndpoint) if e.enabled_events == [ALONE]]
    result = cli(app, "migrate-to-thin", str(lonely.uuid))
    assert result.exit_code == 1 and "has a thin twin in stripe-python" in result.output


def test_during_cutover_the_twin_key_is_fetched_when_the_notification_lacks_it(
    app, hooks, snapshot, stub
):
    hooks.on("customer.created", "v1.customer.created")(
        lambda event, **kw: record(app, event.id, event.type)
    )
    cli(app, "migrate-to-thin", str(snapshot.uuid))
    cli(app, "migrate-to-thin", str(snapshot.uuid), "--cutover")
    thin = the_thin(app)
    event = build_event("customer.created")
    twin = build_thin_twin(event)
    stub.add_thin_event(twin)  # the full event names its snapshot event
    del twin["snapshot_event"]  # the notification does not
    client = app.test_client()
    assert deliver(client, snapshot, event, secret=secret_of(stub, snapshot)).status_code == 200
    response = deliver(client, thin, twin, secret=secret_of(stub, thin))
    assert response.text.strip() == f"twin of {event['id']}: it ran the handlers"
    assert handled(app) == [(event["id"], "customer.created")]
    assert stub.calls("GET")[-1].path == f"/v2/core/events/{twin['id']}"


def test_fetch_missed_in_shadow_stores_shadow_events(app, hooks, snapshot, stub):
    hooks.on("v1.customer.created")(lambda event, **kw: record(app, event.id, "thin"))
    cli(app, "migrate-to-thin", str(snapshot.uuid))
    missed = stub.add_thin_event(build_thin_twin(build_event("customer.created")))
    result = cli(app, "fetch-missed", "--payload", "thin")
    assert result.exit_code == 0 and "1 shadow" in result.output, result.output
    (stored,) = rows(app, StripeEvent)
    assert (stored.id, stored.status) == (missed["id"], "shadow") and handled(app) == []
