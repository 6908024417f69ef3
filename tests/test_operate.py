"""Operating it, the smaller things: doctor's failing-deliveries check once the failed events
are re-run, a paused endpoint in ``list-endpoints``, ``send-test-event`` for a type the
endpoint is not enabled for, no empty audit rows, the ``endpoint-unhealthy`` signal, and
``fetch-missed`` against the fake Stripe server run as ``python -m``. On SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask_stripe_hooks import StripeHooks, signals
from flask_stripe_hooks.models import AuditEntry, StripeEvent, WebhookEndpoint
from flask_stripe_hooks.testing import FakeStripe, build_event, create_endpoint, deliver

from support.helpers import fetch_json, rows

SECRET = "whsec_" + "o" * 32


def invoke(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["stripe-hooks", *args])


def register(app: Flask, *args: str) -> WebhookEndpoint:
    result = invoke(app, "register-endpoint", "--secret", SECRET, *args)
    assert result.exit_code == 0, result.output
    return rows(app, WebhookEndpoint)[-1]


def codes(app: Flask) -> dict[str, str]:
    result = invoke(app, "doctor", "--json")
    found = json.loads(result.output)["findings"]
    assert result.exit_code == (1 if any(f["severity"] != "note" for f in found) else 0)
    return {f["code"]: f["message"] for f in found if f["severity"] != "note"}


def breakable(app: Flask, hooks: StripeHooks) -> tuple[list[bool], WebhookEndpoint]:
    """A registered endpoint whose ``invoice`` handler raises while ``broken[0]`` is true."""
    broken = [True]

    @hooks.on("invoice")
    def handler(event: Any, **kwargs: Any) -> None:
        if broken[0]:
            raise RuntimeError("boom")

    return broken, register(app)


def test_failing_deliveries_are_judged_after_the_last_successful_processing(
    app: Flask, hooks: StripeHooks
) -> None:
    broken, endpoint = breakable(app, hooks)
    client = app.test_client()
    first, second = build_event("invoice.paid"), build_event("invoice.paid")
    for item in (first, second):
        assert deliver(client, endpoint, item, secret=SECRET).status_code == 500
    found = codes(app)
    assert found["failing-deliveries"] == (
        "2 of 2 deliveries failed in the last 24 hours (100%); none succeeded."
    )
    assert set(found) == {"failing-deliveries", "failed-events"}

    broken[0] = False
    result = invoke(app, "reprocess", "--failed")
    assert result.exit_code == 0 and "reprocess: 2 processed" in result.output
    assert codes(app) == {}  # the failures were dealt with: doctor exits 0 at once
    assert invoke(app, "doctor").exit_code == 0

    broken[0] = True  # a new failure after the re-run is reported again
    assert deliver(client, endpoint, build_event("invoice.paid"), secret=SECRET).status_code == 500
    message = codes(app)["failing-deliveries"]
    assert re.fullmatch(
        r"1 of 1 deliveries since the last successful processing \(.+ UTC\) failed \(100%\)\.",
        message,
    ), message
    broken[0] = False
    assert deliver(client, endpoint, build_event("invoice.paid"), secret=SECRET).status_code == 200
    assert set(codes(app)) == {"failed-events"}  # a delivery succeeded since; one event failed


def test_a_failure_after_the_last_success_stays_until_its_own_event_runs(
    app: Flask, hooks: StripeHooks
) -> None:
    """Re-running an event that failed before the last successful delivery does not hide a
    failure after it."""
    broken, endpoint = breakable(app, hooks)
    client = app.test_client()
    early, late = build_event("invoice.paid"), build_event("invoice.paid")
    assert deliver(client, endpoint, early, secret=SECRET).status_code == 500
    assert (
        deliver(client, endpoint, build_event("customer.created"), secret=SECRET).status_code == 200
    )
    assert deliver(client, endpoint, late, secret=SECRET).status_code == 500
    broken[0] = False
    assert invoke(app, "reprocess", early["id"]).exit_code == 0
    assert (
        "1 of 1 deliveries since the last successful processing" in codes(app)["failing-deliveries"]
    )
    assert invoke(app, "reprocess", late["id"]).exit_code == 0
    assert "failing-deliveries" not in codes(app)


def test_list_endpoints_shows_a_paused_endpoint(app: Flask) -> None:
    endpoint = register(app)

    def status() -> str:
        listing = invoke(app, "list-endpoints").output.splitlines()
        (line,) = [line for line in listing if line.startswith(str(endpoint.uuid))]
        return line.split()[3]

    assert status() == "enabled"
    assert invoke(app, "pause", str(endpoint.uuid)).exit_code == 0
    assert status() == "paused"
    assert invoke(app, "resume", str(endpoint.uuid)).exit_code == 0
    assert status() == "enabled"
    assert invoke(app, "update-endpoint", str(endpoint.uuid), "--disable").exit_code == 0
    assert status() == "disabled"


def test_send_test_event_only_for_types_the_endpoint_is_enabled_for(app: Flask) -> None:
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        meters = create_endpoint(
            db, payload="thin", enabled_events=["v1.billing.meter.error_report_triggered"]
        )
        customers = create_endpoint(db, enabled_events=["customer.created", "customer.updated"])
    result = invoke(
        app, "send-test-event", "v2.core.account.created", "--endpoint", str(meters.uuid)
    )
    assert result.exit_code == 1
    assert (
        f"Error: Endpoint {meters.uuid} is not enabled for 'v2.core.account.created' (it"
        " receives v1.billing.meter.error_report_triggered): Stripe would not send it."
    ) in result.output
    args = ["--endpoint", str(customers.uuid)]
    refused = invoke(app, "send-test-event", "invoice.paid", *args)
    assert refused.exit_code == 1 and "is not enabled for 'invoice.paid'" in refused.output
    sent = invoke(app, "send-test-event", "customer.updated", *args)
    assert sent.exit_code == 0 and "→ 200 processed" in sent.output
    thin = invoke(
        app,
        "send-test-event",
        "v1.billing.meter.error_report_triggered",
        "--endpoint",
        str(meters.uuid),
    )
    assert thin.exit_code == 0 and "→ 200 processed" in thin.output
    assert len(rows(app, StripeEvent)) == 2


def test_no_audit_row_for_a_change_that_changes_nothing(app_factory: Any, stub: FakeStripe) -> None:
    app = app_factory(STRIPE_TEST_SECRET_KEY="sk_test_stub", STRIPE_HOOKS_API_BASE=stub.url)
    local = register(app)

    def audit(endpoint: WebhookEndpoint) -> list[tuple[str, dict[str, Any]]]:
        found = rows(app, AuditEntry, AuditEntry.endpoint_uuid == endpoint.uuid)
        return [(row.action, row.changes) for row in sorted(found, key=lambda r: r.id)]

    assert invoke(app, "update-endpoint", str(local.uuid), "--enable").exit_code == 0
    assert [action for action, _ in audit(local)] == ["created"]
    assert invoke(app, "update-endpoint", str(local.uuid), "--disable").exit_code == 0
    assert audit(local)[-1] == ("disabled", {"status": ["enabled", "disabled"]})

    made = invoke(app, "create-endpoint", "--base-url", "https://shop.example.com")
    assert made.exit_code == 0, made.output
    remote = rows(app, WebhookEndpoint)[-1]
    stub.endpoints[remote.stripe_id]["status"] = "disabled"  # Stripe disabled it
    assert invoke(app, "update-endpoint", str(remote.uuid), "--enable").exit_code == 0
    assert stub.endpoints[remote.stripe_id]["status"] == "enabled"  # sent to Stripe still
    assert audit(remote)[-1] == ("enabled", {"on Stripe": "enabled"})


def test_endpoint_unhealthy_is_sent_by_doctor_not_by_the_health_page(app_factory: Any) -> None:
    from support.admin_support import allow

    app = app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow)
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        endpoint = create_endpoint(db)
        db.session.execute(
            sa.update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id).values(secrets=[])
        )
        db.session.commit()
    heard: list[list[str]] = []

    def receiver(sender: Any, endpoint: Any, findings: Any, **kwargs: Any) -> None:
        heard.append([f.code for f in findings])

    signals.endpoint_unhealthy.connect(receiver)
    try:
        page = app.test_client().get("/stripe-hooks/admin/health")
        assert page.status_code == 200 and "no-secret" in page.text
        assert heard == []
        assert invoke(app, "doctor").exit_code == 1
        assert heard == [["no-secret"]]
    finally:
        signals.endpoint_unhealthy.disconnect(receiver)


def post_event(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    return fetch_json(url + "/_fake/events", json.dumps(body).encode())


def test_fetch_missed_against_the_fake_stripe_server(
    app_factory: Any, tmp_path: Path, processes: list[Any]
) -> None:
    """The try-out of docs/operations.md: the fake run as ``python -m``, events added to it
    with ``POST /_fake/events``, then ``fetch-missed --undelivered`` and ``fetch-missed``."""
    from support.queue_support import Process, wait_until

    args = [sys.executable, "-m", "flask_stripe_hooks.testing.fake_stripe", "--port", "0"]
    server = Process(args, dict(os.environ), tmp_path / "fake.log")
    processes.append(server)
    line = wait_until(
        lambda: re.search(r"Fake Stripe API on (http://\S+)", server.output()), 30, "the fake"
    )
    url = line.group(1)
    assert f'curl -d \'{{"type": "invoice.paid"}}\' {url}/_fake/events' in server.output()
    assert "Warning" not in server.output()

    status, missed = post_event(url, {"type": "invoice.paid", "data": {"customer": "cus_1"}})
    assert status == 200 and missed["type"] == "invoice.paid"
    assert missed["data"]["object"]["customer"] == "cus_1"
    status, delivered = post_event(url, {"type": "customer.created", "delivered": True})
    assert status == 200 and delivered["pending_webhooks"] == 0
    whole = build_event("customer.updated")
    assert post_event(url, whole) == (200, whole)
    status, error = post_event(url, {"type": "invoice.payed"})
    assert (
        status == 400 and "'invoice.payed' is not a Stripe event type" in error["error"]["message"]
    )

    app = app_factory(STRIPE_HOOKS_API_BASE=url, STRIPE_TEST_SECRET_KEY="sk_test_fake")
    result = invoke(app, "fetch-missed", "--undelivered")
    assert result.exit_code == 0, result.output
    assert "Stripe listed 2 undelivered event(s); 2 not stored here." in result.output
    assert "fetch-missed: 2 processed" in result.output
    result = invoke(app, "fetch-missed")
    assert "Stripe listed 3 event(s); 1 not stored here." in result.output
    assert sorted(e.id for e in rows(app, StripeEvent)) == sorted(
        [missed["id"], delivered["id"], whole["id"]]
    )


def test_the_fake_refuses_a_body_it_cannot_read(stub: FakeStripe) -> None:
    for body, message in (
        (b"not json", "The body must be JSON"),
        (b"[]", "The body must be a JSON object."),
        (b'{"object": "event", "id": "evt_1"}', "Missing required param: type."),
        (b'{"type": "invoice.paid", "data": 1}', "Invalid data: must be an object."),
    ):
        status, answer = fetch_json(stub.url + "/_fake/events", body)
        assert status == 400 and message in answer["error"]["message"], body
    assert stub.events == []
