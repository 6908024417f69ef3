"""Thin events (v2 event destinations), end to end: receiving, dispatch, fetching data,
endpoints on Stripe, the CLI and the admin.

Payloads are signed by stripe-python and by stripe-node; Stripe's API is
``flask_stripe_hooks.testing.FakeStripe``, reached by the real stripe-python through
``STRIPE_HOOKS_API_BASE``.
Every app-level test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import typing
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_stripe_hooks import event_types
from flask_stripe_hooks.errors import StripeAPIError, UnknownEventTypeWarning
from flask_stripe_hooks.events import ThinEvent
from flask_stripe_hooks.extension import get_state
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery, WebhookEndpoint
from flask_stripe_hooks.pipeline.run import process_stored
from flask_stripe_hooks.testing import (
    FakeStripe,
    build_event,
    build_thin_event,
    create_endpoint,
    deliver,
    new_secret,
    sign_payload,
    webhook_path,
)

from support.helpers import NODE_HINT, handled, missing, record, rows

TEST_KEY, LIVE_KEY, EU_KEY = "sk_test_stub", "sk_live_stub", "sk_test_eu"
API_VERSION = "2025-03-31.basil"
METER_ERROR = "v1.billing.meter.error_report_triggered"
NO_METER = "v1.billing.meter.no_meter_found"
NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def stub_server() -> Iterator[FakeStripe]:
    with FakeStripe(keys={TEST_KEY, LIVE_KEY, EU_KEY}) as server:
        yield server


@pytest.fixture
def stub(stub_server: FakeStripe) -> FakeStripe:
    stub_server.reset()
    return stub_server


def allow() -> bool:
    return True


@pytest.fixture
def app(app_factory: Any, stub: FakeStripe) -> Flask:
    return app_factory(  # type: ignore[no-any-return]
        STRIPE_TEST_SECRET_KEY=TEST_KEY,
        STRIPE_LIVE_SECRET_KEY=LIVE_KEY,
        STRIPE_API_VERSION=API_VERSION,
        STRIPE_HOOKS_API_BASE=stub.url,
        STRIPE_HOOKS_ACCOUNTS={"eu": {"test_secret_key": EU_KEY}},
        STRIPE_HOOKS_ADMIN_AUTH=allow,
    )


@pytest.fixture
def seen(app: Flask, hooks: Any) -> list[Any]:
    """Every event the handlers got; a row per call in ``handled``."""
    events: list[Any] = []

    @hooks.on("*")
    def every(event: Any, **kwargs: Any) -> None:
        events.append(event)
        record(app, event.id, "*")

    @hooks.on("v1.billing.meter")
    def meters(event: Any, **kwargs: Any) -> None:
        record(app, event.id, "v1.billing.meter")

    @hooks.on("billing")  # a snapshot prefix: never a thin event
    def snapshot_billing(event: Any, **kwargs: Any) -> None:
        record(app, event.id, "billing")

    return events


def cli(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=["stripe-hooks", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


# -- receiving ---------------------------------------------------------------------------------


def test_thin_event_signed_by_stripe_python_is_stored_and_dispatched(
    app, client, thin_endpoint, seen, stub
):
    notification = build_thin_event(METER_ERROR, context="acct_1Nv0FGQ9RKHgCVdK")
    response = deliver(client, thin_endpoint, notification)
    assert response.status_code == 200, response.text
    assert response.text.strip() == "processed"
    # Same prefix rules as snapshot events: "*", then "v1.billing.meter"; not "billing".
    assert handled(app) == [(notification["id"], "*"), (notification["id"], "v1.billing.meter")]

    (event,) = seen
    assert isinstance(event, ThinEvent) and event.thin
    assert (event.id, event.type, event.livemode) == (notification["id"], METER_ERROR, False)
    assert abs(event.created - time.time()) < 5  # from the RFC 3339 created
    assert event.related_object == notification["related_object"]
    assert event.context == event.account == "acct_1Nv0FGQ9RKHgCVdK"
    assert event.object is None and event.to_dict() == notification
    assert event.request_id == notification["reason"]["request"]["id"]
    assert stub.requests == []  # nothing fetched unless a handler asks

    (stored,) = rows(app, StripeEvent)
    assert (stored.id, stored.type, stored.status, stored.attempts) == (
        notification["id"],
        METER_ERROR,
        "processed",
        1,
    )
    assert stored.data == notification and stored.account == "acct_1Nv0FGQ9RKHgCVdK"
    assert stored.endpoint_id == thin_endpoint.id and stored.api_version == ""
    assert stored.created is not None
    (delivery,) = rows(app, WebhookDelivery)
    assert delivery.valid and delivery.outcome == "processed"
    assert json.loads(delivery.body) == notification


def node_sign(payload: str, secret: str) -> dict[str, Any]:
    """Sign with stripe-node (``tests/node/sign_thin.js``), which also parses it back."""
    if shutil.which("node") is None:
        missing("Node.js", NODE_HINT)
    if not (NODE_DIR / "node_modules" / "stripe").is_dir():
        missing("stripe-node in tests/node", "(cd tests/node && npm install)")
    done = subprocess.run(
        ["node", "sign_thin.js"],
        cwd=NODE_DIR,
        input=json.dumps({"payload": payload, "secret": secret}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_thin_event_signed_by_stripe_node_is_accepted(app, client, thin_endpoint, secret, seen):
    notification = build_thin_event(NO_METER, related_object=False)
    payload = json.dumps(notification, separators=(",", ":"))
    signed = node_sign(payload, secret)
    assert (signed["id"], signed["type"]) == (notification["id"], NO_METER)  # stripe-node's parse
    response = client.post(
        webhook_path(app, thin_endpoint.uuid),
        data=payload,
        headers={"Stripe-Signature": signed["header"], "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert handled(app) == [(notification["id"], "*"), (notification["id"], "v1.billing.meter")]
    assert seen[0].related_object is None

    forged = node_sign(payload, new_secret())  # stripe-node, but not this endpoint's secret
    response = client.post(
        webhook_path(app, thin_endpoint.uuid),
        data=payload,
        headers={"Stripe-Signature": forged["header"]},
    )
    assert response.status_code == 400 and response.text.strip() == "signature does not match"


def test_snapshot_payload_on_thin_endpoint_is_400(app, client, thin_endpoint, seen):
    response = deliver(client, thin_endpoint, build_event("customer.created"))
    assert response.status_code == 400
    assert response.text.strip() == (
        "snapshot event sent to a thin endpoint; snapshot events need an endpoint whose"
        " payload style is snapshot"
    )
    assert rows(app, StripeEvent) == [] and handled(app) == []
    (delivery,) = rows(app, WebhookDelivery)
    assert not delivery.valid and delivery.outcome == "rejected"
    assert delivery.error.startswith("snapshot event sent to a thin endpoint")


def test_thin_payload_on_snapshot_endpoint_is_400(app, client, endpoint, seen):
    response = deliver(client, endpoint, build_thin_event(METER_ERROR))
    assert response.status_code == 400
    assert response.text.strip() == (
        "thin event sent to a snapshot endpoint; thin events need an endpoint whose"
        " payload style is thin"
    )
    assert rows(app, StripeEvent) == [] and handled(app) == []
    (delivery,) = rows(app, WebhookDelivery)
    assert not delivery.valid and delivery.error.startswith("thin event sent to a snapshot")


@pytest.mark.parametrize(
    ("body", "how", "reason"),
    [
        (None, "wrong secret", "signature does not match"),
        (None, "stale", "timestamp outside the tolerance"),
        (None, "future", "timestamp in the future"),
        (None, "live", "live-mode event sent to a test endpoint"),
        ('{"id": "evt_1", "object": "v2.core.ev', "sign", "body is not JSON"),
        (json.dumps({**build_thin_event(NO_METER), "n": float("nan")}), "sign", "body is not JSON"),
        ("[" * 100_000 + "]" * 100_000, "sign", "body is not JSON"),
        ('{"object": "v2.core.event", "type": "v1.x"}', "sign", "event has no valid id"),
        ('{"id": "evt_1", "object": "list", "type": "v1.x"}', "sign", "body is not a Stripe thin"),
        (
            '{"id": "evt_1", "object": "v2.core.event", "type": "v1.billing.meter.no_meter_found",'
            ' "created": "2026-01-01T00:00:00Z"}',
            "sign",
            "event has no livemode",
        ),
    ],
)
def test_bad_thin_deliveries_are_400_with_a_reason(
    app, client, thin_endpoint, secret, seen, body, how, reason
):
    now = int(time.time())
    if body is None:
        body = json.dumps(build_thin_event(NO_METER, livemode=how == "live"))
    key = new_secret() if how == "wrong secret" else secret
    stamp = {"stale": now - 3600, "future": now + 3600}.get(how, now)
    _, header = sign_payload(body, key, stamp)
    response = client.post(
        webhook_path(app, thin_endpoint.uuid), data=body, headers={"Stripe-Signature": header}
    )
    assert response.status_code == 400
    assert response.text.strip().startswith(reason)
    assert rows(app, StripeEvent) == [] and handled(app) == []


def test_non_utf8_body_is_400(app, client, thin_endpoint, secret):
    _, header = sign_payload("x", secret)
    response = client.post(
        webhook_path(app, thin_endpoint.uuid),
        data=b"\xff\xfe",
        headers={"Stripe-Signature": header},
    )
    assert response.status_code == 400 and response.text.strip() == "body is not UTF-8"


def test_each_active_secret_is_tried(app, db, client, hooks, seen):
    old, new = new_secret(), new_secret()
    with app.app_context():
        rotated = create_endpoint(db, secret=new, payload="thin")
        stored = db.session.get(WebhookEndpoint, rotated.id)
        stored.secrets = [
            {"secret": old, "expires_at": "2999-01-01T00:00:00+00:00"},
            *stored.secrets,
        ]
        db.session.commit()
    for key in (old, new):
        response = deliver(client, rotated.uuid, build_thin_event(NO_METER), secret=key)
        assert response.status_code == 200, response.text
    assert len(rows(app, StripeEvent)) == 2


def test_duplicate_runs_handlers_once_and_failure_is_retried(app, client, thin_endpoint, hooks):
    calls: list[str] = []
    fail = [True]

    @hooks.on(METER_ERROR)
    def flaky(event: Any, **kwargs: Any) -> None:
        calls.append(event.id)
        record(app, event.id, "flaky")
        if fail[0]:
            raise RuntimeError("meter service down")

    notification = build_thin_event(METER_ERROR)
    response = deliver(client, thin_endpoint, notification)
    assert response.status_code == 500 and response.text.strip() == "handler failed"
    (stored,) = rows(app, StripeEvent)
    assert stored.status == "failed" and "meter service down" in stored.last_error
    assert handled(app) == []  # rolled back with the event

    fail[0] = False
    assert deliver(client, thin_endpoint, notification).status_code == 200  # Stripe's retry
    again = deliver(client, thin_endpoint, notification)
    assert again.status_code == 200 and again.text.strip() == "duplicate"
    assert calls == [notification["id"]] * 2 and handled(app) == [(notification["id"], "flaky")]
    (stored,) = rows(app, StripeEvent)
    assert stored.status == "processed" and stored.attempts == 2
    outcomes = [d.outcome for d in rows(app, WebhookDelivery)]
    assert sorted(outcomes) == ["duplicate", "failed", "processed"]


# -- fetching the event and the related object --------------------------------------------------


def meter(stub: FakeStripe, notification: dict[str, Any]) -> dict[str, Any]:
    """The event's meter on the fake, in the account of the event's context (as on Stripe,
    only requests carrying that ``Stripe-Context`` see it)."""
    related = notification["related_object"]
    return stub.add_object(
        related["url"],
        {
            "id": related["id"],
            "object": "billing.meter",
            "display_name": "API calls",
            "event_name": "api_call",
            "status": "active",
            "livemode": False,
        },
        account=notification.get("context") or "",
    )


def test_handlers_fetch_the_event_and_related_object_lazily(app, client, db, hooks, stub, secret):
    with app.app_context():
        eu = create_endpoint(db, secret=secret, payload="thin", account="eu")
    fetched: dict[str, Any] = {}

    @hooks.on("v1.billing.meter.error_report_triggered")
    def on_error(event: Any, **kwargs: Any) -> None:
        fetched["event"] = event.fetch_event()
        fetched["object"] = event.fetch_related_object()
        record(app, event.id, fetched["object"].display_name)

    notification = build_thin_event(METER_ERROR, context="acct_1Nv0FGQ9RKHgCVdK")
    meter(stub, notification)
    stub.add_thin_event(
        notification,
        developer_message_summary="2 errors",
        reason={"error_count": 2, "error_types": []},
        validation_start="2026-01-01T00:00:00.000Z",
        validation_end="2026-01-01T01:00:00.000Z",
    )
    assert deliver(client, eu, notification).status_code == 200

    full, obj = fetched["event"], fetched["object"]
    assert type(full).__name__ == "V1BillingMeterErrorReportTriggeredEvent"
    assert full.id == notification["id"] and full.data.developer_message_summary == "2 errors"
    assert type(obj).__name__ == "Meter" and obj.id == notification["related_object"]["id"]
    assert handled(app) == [(notification["id"], "API calls")]

    event_call, object_call = stub.requests
    assert (event_call.method, event_call.path) == ("GET", f"/v2/core/events/{notification['id']}")
    assert (object_call.method, object_call.path) == ("GET", notification["related_object"]["url"])
    for call in (event_call, object_call):
        assert call.api_key == EU_KEY  # the endpoint's account, in the endpoint's mode
        assert call.headers["Stripe-Version"] == API_VERSION
        assert call.headers["Stripe-Context"] == "acct_1Nv0FGQ9RKHgCVdK"
        assert call.headers["Stripe-Request-Trigger"] == f"event={notification['id']}"


def test_a_failed_fetch_fails_the_event_so_stripe_retries(app, client, thin_endpoint, hooks, stub):
    @hooks.on(METER_ERROR)
    def on_error(event: Any, **kwargs: Any) -> None:
        event.fetch_related_object()

    notification = build_thin_event(METER_ERROR)  # the stub does not know its meter
    response = deliver(client, thin_endpoint, notification)
    assert response.status_code == 500
    (stored,) = rows(app, StripeEvent)
    assert stored.status == "failed" and "InvalidRequestError" in stored.last_error
    meter(stub, notification)
    assert deliver(client, thin_endpoint, notification).status_code == 200


def test_related_object_of_a_type_stripe_python_declares_none_for(
    app, client, thin_endpoint, hooks, stub
):
    got: list[Any] = []
    hooks.on(NO_METER)(lambda event, **kw: got.append(event.fetch_related_object()))
    related = {"id": "mtr_123", "type": "billing.meter", "url": "/v1/billing/meters/mtr_123"}
    notification = build_thin_event(NO_METER, related_object=related)
    meter(stub, notification)
    assert deliver(client, thin_endpoint, notification).status_code == 200
    assert type(got[0]).__name__ == "Meter" and got[0].id == "mtr_123"
    (call,) = stub.requests
    assert (call.path, call.api_key) == ("/v1/billing/meters/mtr_123", TEST_KEY)


def test_reprocessing_and_queue_mode_rebuild_the_thin_event(
    app_factory, hooks, stub, database_url, secret
):
    queued: list[str] = []
    app = app_factory(
        STRIPE_TEST_SECRET_KEY=TEST_KEY,
        STRIPE_HOOKS_API_BASE=stub.url,
        STRIPE_HOOKS_ACCOUNTS={"eu": {"test_secret_key": EU_KEY}},
        STRIPE_HOOKS_EVENT_CALLBACK=queued.append,
    )
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        eu = create_endpoint(db, secret=secret, payload="thin", account="eu")
    got: list[Any] = []

    @hooks.on("v1.billing.meter")
    def on_meter(event: Any, **kwargs: Any) -> None:
        got.append((event, event.fetch_related_object().display_name))

    notification = build_thin_event(METER_ERROR)
    meter(stub, notification)
    response = deliver(app.test_client(), eu, notification)
    assert response.status_code == 200 and response.text.strip() == "queued"
    assert queued == [notification["id"]] and got == []
    with app.app_context():  # what the worker does
        result = process_stored(get_state(), notification["id"])
    assert result.outcome == "processed"
    ((event, name),) = got
    assert isinstance(event, ThinEvent) and event.client_account == "eu" and name == "API calls"
    assert event.to_dict() == notification and event.related_object["id"].startswith("mtr_")
    assert [c.api_key for c in stub.requests] == [EU_KEY]


def test_without_a_key_the_event_is_stored_and_fetching_names_the_setting(
    app_factory, hooks, secret
):
    app = app_factory()  # no Stripe key at all
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        ep = create_endpoint(db, secret=secret, payload="thin")
    got: list[Any] = []
    hooks.on(NO_METER)(lambda event, **kw: got.append(event))
    assert deliver(app.test_client(), ep, build_thin_event(NO_METER)).status_code == 200
    with app.app_context(), pytest.raises(StripeAPIError, match="set STRIPE_TEST_SECRET_KEY"):
        got[0].fetch_event()


# -- event types and dispatch ----------------------------------------------------------------


def test_thin_types_come_from_stripe_pythons_notification_classes():
    import stripe.events

    types = event_types.thin_event_types()
    classes = typing.get_args(stripe.events.ALL_EVENT_NOTIFICATIONS)
    assert len(types) == len(classes) >= 24  # stripe-python 15.6 has 24, 16.1 has 326
    assert METER_ERROR in types and "v2.core.account.created" in types
    assert all(t.split(".")[0] in ("v1", "v2") for t in types)
    assert not set(types) & set(event_types.all_event_types())
    assert event_types.matching("v1.billing.meter.*", thin=True) == [
        t for t in types if t.startswith("v1.billing.meter.")
    ]


def test_typo_warnings_know_thin_types(hooks):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hooks.on("v1.billing.meter", "v2.core", NO_METER)(lambda event, **kw: None)
    with pytest.warns(UnknownEventTypeWarning, match="did you mean 'v1.billing.meter'"):
        hooks.on("v1.billing.metr")(lambda event, **kw: None)


# -- endpoints on Stripe --------------------------------------------------------------------


def test_create_endpoint_payload_thin_creates_an_event_destination(app, client, stub, seen):
    result = cli(
        app,
        "create-endpoint",
        "--payload",
        "thin",
        "--base-url",
        "https://shop.example.com",
        "--events",
        "v1.billing.meter.*",
        "--description",
        "Usage alerts",
        "--metadata",
        "team=billing",
    )
    assert result.exit_code == 0, result.output
    (endpoint,) = rows(app, WebhookEndpoint)
    assert "payload:   thin" in result.output and str(endpoint.uuid) in result.output

    (call,) = stub.requests
    assert (call.method, call.path) == ("POST", "/v2/core/event_destinations")
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["Stripe-Version"] == API_VERSION and call.api_key == TEST_KEY
    url = f"https://shop.example.com/stripe/webhook/{endpoint.uuid}/"
    meters = event_types.matching("v1.billing.meter", thin=True)
    assert call.json == {
        "name": f"flask-stripe-hooks {endpoint.uuid}",
        "type": "webhook_endpoint",
        "event_payload": "thin",
        "enabled_events": meters,
        "webhook_endpoint": {"url": url},
        "include": ["webhook_endpoint.signing_secret", "webhook_endpoint.url"],
        "metadata": {"team": "billing", "flask_stripe_hooks_uuid": str(endpoint.uuid)},
        "description": "Usage alerts",
    }
    assert endpoint.payload == "thin" and endpoint.stripe_id.startswith("ed_test_")
    assert endpoint.url == url and endpoint.enabled_events == meters
    assert endpoint.api_version == "" and endpoint.status == "enabled"
    assert endpoint.secrets == [{"secret": stub.secrets[endpoint.stripe_id], "expires_at": None}]

    # The stored secret verifies what this destination sends.
    notification = build_thin_event(NO_METER)
    response = deliver(client, endpoint, notification, secret=stub.secrets[endpoint.stripe_id])
    assert response.status_code == 200 and handled(app)[0] == (notification["id"], "*")


def test_connect_thin_endpoint_receives_from_connected_accounts(app, stub):
    result = cli(
        app, "create-endpoint", "--payload", "thin", "--base-url", "https://shop.example.com",
        "--events", NO_METER, "--connect", "--mode", "live",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (call,) = stub.requests
    assert call.api_key == LIVE_KEY and call.json["events_from"] == ["@accounts"]
    (endpoint,) = rows(app, WebhookEndpoint)
    assert endpoint.livemode and endpoint.connect


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--payload", "thin", "--events", "customer.created"], "'customer.created' is a snapshot"),
        (["--payload", "thin", "--events", "v1.billing.metr"], "did you mean 'v1.billing.meter'"),
        (["--payload", "thin", "--api-version", API_VERSION], "Thin events have no API version"),
        (["--events", METER_ERROR], "is a thin event type; it needs an endpoint with payload"),
        (["--payload", "fat"], "'fat' is not one of 'snapshot', 'thin'"),
    ],
)
def test_bad_thin_create_is_refused_before_any_call(app, stub, args, message):
    result = cli(app, "create-endpoint", "--base-url", "https://shop.example.com", *args)
    assert result.exit_code != 0 and message in result.output
    assert stub.requests == [] and rows(app, WebhookEndpoint) == []


def test_stripe_refusal_of_a_destination_is_a_message_and_nothing_is_stored(app, stub):
    stub.fail_next(
        400,
        {
            "type": "invalid_request_error",
            "code": "invalid_value",
            "message": "Event destinations are not available for this account.",
        },
    )
    result = cli(
        app, "create-endpoint", "--payload", "thin", "--base-url", "https://shop.example.com",
        "--events", NO_METER,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "Event destinations are not available for this account." in result.output
    assert rows(app, WebhookEndpoint) == []


def test_update_disable_enable_delete_a_thin_endpoint(app, stub):
    cli(
        app, "create-endpoint", "--payload", "thin", "--base-url", "https://shop.example.com",
        "--events", "v1.billing.meter.*",
    )  # fmt: skip
    (endpoint,) = rows(app, WebhookEndpoint)
    ed = endpoint.stripe_id
    stub.requests.clear()

    result = cli(app, "update-endpoint", str(endpoint.uuid), "--events", NO_METER)
    assert result.exit_code == 0, result.output
    (call,) = stub.requests
    assert (call.method, call.path) == ("POST", f"/v2/core/event_destinations/{ed}")
    assert call.json == {"enabled_events": [NO_METER]}
    assert stub.destinations[ed]["enabled_events"] == [NO_METER]

    result = cli(app, "update-endpoint", ed, "--events", "customer.created")
    assert result.exit_code == 1 and "'customer.created' is a snapshot event type" in result.output

    cli(app, "update-endpoint", str(endpoint.uuid), "--disable")
    assert (stub.requests[-1].method, stub.requests[-1].path) == (
        "POST",
        f"/v2/core/event_destinations/{ed}/disable",
    )
    assert stub.destinations[ed]["status"] == "disabled"
    assert rows(app, WebhookEndpoint)[0].status == "disabled"
    cli(app, "update-endpoint", str(endpoint.uuid), "--enable")
    assert stub.requests[-1].path == f"/v2/core/event_destinations/{ed}/enable"
    assert stub.destinations[ed]["status"] == "enabled"

    result = cli(app, "delete-endpoint", str(endpoint.uuid))
    assert result.exit_code == 0, result.output
    assert (stub.requests[-1].method, stub.requests[-1].path) == (
        "DELETE",
        f"/v2/core/event_destinations/{ed}",
    )
    assert stub.destinations == {} and rows(app, WebhookEndpoint) == []


def test_delete_of_a_destination_gone_on_stripe_is_not_an_error(app, db, stub, secret):
    with app.app_context():
        create_endpoint(db, secret=secret, payload="thin", stripe_id="ed_test_gone")
    result = cli(app, "delete-endpoint", "ed_test_gone")
    assert result.exit_code == 0, result.output
    assert stub.requests[-1].path == "/v2/core/event_destinations/ed_test_gone"
    assert rows(app, WebhookEndpoint) == []


def test_sync_endpoints_reports_a_thin_endpoint_gone_on_stripe(app, db, stub, secret):
    with app.app_context():
        create_endpoint(db, secret=secret, payload="thin", stripe_id="ed_test_gone")
    result = cli(app, "sync-endpoints")  # thin endpoints are synced too (test_thin_sync.py)
    assert result.exit_code == 0, result.output
    assert "1 missing on Stripe" in result.output and "ed_test_gone" in result.output
    (endpoint,) = rows(app, WebhookEndpoint)
    assert endpoint.status == "enabled"  # left alone


# -- CLI: register, send-test-event, event-types -----------------------------------------------


def test_register_and_send_test_event_thin(app, stub, secret, seen):
    result = cli(app, "register-endpoint", "--secret", secret, "--payload", "thin")
    assert result.exit_code == 0 and "for thin events" in result.output
    (endpoint,) = rows(app, WebhookEndpoint)
    assert endpoint.payload == "thin"

    result = cli(app, "send-test-event", METER_ERROR, "--data", '{"context": "acct_123"}')
    assert result.exit_code == 0, result.output
    assert f"{METER_ERROR} → 200 processed" in result.output
    (event,) = seen
    assert event.type == METER_ERROR and event.context == "acct_123" and event.related_object

    result = cli(app, "send-test-event", "customer.created")
    assert result.exit_code == 1
    assert "'customer.created' is a snapshot event type" in result.output
    result = cli(app, "send-test-event", "v1.billing.meter")
    assert result.exit_code == 1 and "not a thin event type" in result.output
    assert stub.requests == []

    bad = cli(
        app, "register-endpoint", "--secret", secret, "--payload", "thin", "--stripe-id", "we_1"
    )
    assert bad.exit_code == 1 and "starts with 'ed_'" in bad.output


def test_event_types_thin(app):
    result = cli(app, "event-types", "--thin", "v1.billing.meter")
    assert result.output.split() == event_types.matching("v1.billing.meter", thin=True)
    result = cli(app, "event-types", "--thin", "v1.biling")
    assert result.exit_code == 1 and "did you mean" in result.output


# -- the admin ---------------------------------------------------------------------------------


def test_admin_form_creates_a_thin_endpoint(app, client, stub):
    admin = "/stripe-hooks/admin"
    page = client.get(admin + "/endpoints/new")
    assert 'value="thin"' in page.text and f'value="{METER_ERROR}"' in page.text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    form = {
        "csrf_token": token,
        "account": "",
        "mode": "test",
        "payload": "thin",
        "base_url": "https://shop.example.com",
        "events": [NO_METER, METER_ERROR],
    }
    response = client.post(admin + "/endpoints/new", data={**form, "events": "customer.created"})
    assert response.status_code == 400
    errors = re.search(r'<ul class="errors" id="events-error">(.*?)</ul>', response.text, re.S)
    assert errors and "&#39;customer.created&#39; is a snapshot event type" in errors.group(1)
    assert stub.requests == []

    response = client.post(admin + "/endpoints/new", data=form)
    assert response.status_code == 302, response.text
    (endpoint,) = rows(app, WebhookEndpoint)
    (call,) = stub.requests
    assert call.path == "/v2/core/event_destinations"
    assert call.json["enabled_events"] == sorted([NO_METER, METER_ERROR])
    assert endpoint.payload == "thin"
    detail = client.get(response.location)
    assert "thin events (v2 event destination)" in detail.text
    assert stub.secrets[endpoint.stripe_id] not in detail.text

    response = client.post(
        f"{admin}/endpoints/{endpoint.uuid}/status", data={"csrf_token": token, "disable": "1"}
    )
    assert response.status_code == 302
    assert stub.requests[-1].path == f"/v2/core/event_destinations/{endpoint.stripe_id}/disable"


def test_payload_column_defaults_to_snapshot(app, db):
    with app.app_context():
        endpoint = create_endpoint(db)
    assert endpoint.payload == "snapshot" and not endpoint.thin
