"""``flask stripe-hooks doctor`` and the admin's Health page, against the fake Stripe API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask_stripe_hooks import StripeHooks, health, signals
from flask_stripe_hooks.models import WebhookEndpoint
from flask_stripe_hooks.testing import FakeStripe, build_event, deliver
from flask_stripe_hooks.utils import utcnow

from support.admin_support import ADMIN, basic_auth
from support.helpers import rows

TEST_KEY = "sk_test_doctor"


@pytest.fixture(scope="module")
def stub_server() -> Iterator[FakeStripe]:
    with FakeStripe(keys={TEST_KEY}) as server:
        yield server


@pytest.fixture
def stub(stub_server: FakeStripe) -> FakeStripe:
    stub_server.reset()
    return stub_server


@pytest.fixture
def app(app_factory: Any, stub: FakeStripe) -> Flask:
    return app_factory(  # type: ignore[no-any-return]
        STRIPE_TEST_SECRET_KEY=TEST_KEY,
        STRIPE_HOOKS_API_BASE=stub.url,
        STRIPE_HOOKS_ADMIN_AUTH=basic_auth,
    )


def doctor(app: Flask, *args: str, input: str | None = None) -> Any:
    return app.test_cli_runner().invoke(args=["stripe-hooks", "doctor", *args], input=input)


def create_on_stripe(app: Flask) -> WebhookEndpoint:
    """``create-endpoint`` sending ``customer.*`` to https://shop.example.com."""
    args = ["create-endpoint", "--base-url", "https://shop.example.com", "--events", "customer.*"]
    made = app.test_cli_runner().invoke(args=["stripe-hooks", *args])
    assert made.exit_code == 0, made.output
    (endpoint,) = rows(app, WebhookEndpoint)
    return endpoint


def codes(app: Flask) -> set[str]:
    result = doctor(app, "--json")
    data = json.loads(result.output)
    assert result.exit_code == (0 if data["ok"] else 1)
    return {f["code"] for f in data["findings"] if f["severity"] != "note"}


def test_doctor_reports_each_problem_and_fixes_the_safe_ones(
    app: Flask, hooks: StripeHooks, stub: FakeStripe
) -> None:
    hooks.on("customer")(lambda event, **kw: None)
    endpoint = create_on_stripe(app)
    remote = stub.endpoints[endpoint.stripe_id]

    ok = doctor(app)
    assert ok.exit_code == 0, ok.output
    assert "doctor: all well" in ok.output

    # A handler on a type the endpoint does not send never runs.
    hooks.on("invoice")(lambda event, **kw: None)
    found = doctor(app)
    assert found.exit_code == 1
    assert "handler-not-covered" in found.output and "invoice" in found.output
    fixed = doctor(app, "--fix", "--yes")
    assert fixed.exit_code == 0, fixed.output
    assert "invoice.paid" in remote["enabled_events"]
    assert "customer.created" in remote["enabled_events"]

    # A type no handler listens to.
    remote["enabled_events"].append("charge.succeeded")
    assert codes(app) == {"unused-types"}
    remote["enabled_events"].remove("charge.succeeded")

    # Stripe disabled it: only re-enabled when asked for.
    remote["status"] = "disabled"
    assert codes(app) == {"disabled-on-stripe"}
    assert doctor(app, "--fix", "--yes").exit_code == 1
    assert remote["status"] == "disabled"
    declined = doctor(app, "--fix", "--reenable", input="n\n")
    assert declined.exit_code == 1 and remote["status"] == "disabled"
    assert doctor(app, "--fix", "--reenable", input="y\n").exit_code == 0
    assert remote["status"] == "enabled"

    remote["url"] = "https://shop.example.com/somewhere-else/"
    assert codes(app) == {"wrong-url"}
    remote["url"] = endpoint.url

    remote["api_version"] = "2020-08-27"
    drift = doctor(app)
    assert drift.exit_code == 1 and "2020-08-27" in drift.output
    assert f"upgrade-endpoint {endpoint.uuid}" in drift.output
    remote["api_version"] = health.expected_api_version(app.extensions["stripe_hooks"])
    assert doctor(app).exit_code == 0

    # The only signing secret expires in three days.
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        row = db.session.get(WebhookEndpoint, endpoint.id)
        secret = row.secrets[-1]["secret"]
        expires = (utcnow() + timedelta(days=3)).isoformat()
        row.secrets = [{"secret": secret, "expires_at": expires}]
        db.session.commit()
    expiring = doctor(app)
    assert expiring.exit_code == 1 and "expires in 2 days" in expiring.output
    assert secret not in expiring.output
    with app.app_context():
        row = db.session.get(WebhookEndpoint, endpoint.id)
        row.secrets = [{"secret": secret, "expires_at": None}]
        db.session.commit()

    # Deleted on Stripe; the signal names the endpoint and its findings.
    heard: list[tuple[Any, list[health.Finding]]] = []

    def listen(sender: Any, endpoint: Any, findings: Any) -> None:
        heard.append((endpoint.uuid, findings))

    del stub.endpoints[endpoint.stripe_id]
    with signals.endpoint_unhealthy.connected_to(listen, sender=app):
        gone = doctor(app, "--json")
    assert gone.exit_code == 1
    data = json.loads(gone.output)
    assert data["ok"] is False
    assert [f["code"] for f in data["findings"]] == ["deleted-on-stripe"]
    assert data["findings"][0]["endpoint"] == str(endpoint.uuid)
    assert [(u, [f.code for f in fs]) for u, fs in heard] == [
        (endpoint.uuid, ["deleted-on-stripe"])
    ]


def test_local_checks_failures_and_endpoints_made_elsewhere(app: Flask, hooks: StripeHooks) -> None:
    def broken(event: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    hooks.on("invoice")(broken)
    client = app.test_client()
    result = app.test_cli_runner().invoke(
        args=["stripe-hooks", "register-endpoint", "--secret", "whsec_" + "a" * 32]
    )
    assert result.exit_code == 0, result.output
    (endpoint,) = rows(app, WebhookEndpoint)
    response = deliver(client, endpoint, build_event("invoice.paid"), secret="whsec_" + "a" * 32)
    assert response.status_code == 500
    found = doctor(app)
    assert found.exit_code == 1
    assert "not-on-stripe" in found.output  # a note: Stripe's side skipped
    assert "1 of 1 deliveries failed in the last 24 hours (100%)" in found.output
    assert "failed-events" in found.output and "reprocess --failed" in found.output
    assert codes(app) == {"failing-deliveries", "failed-events"}


def test_admin_health_page_shows_the_same_findings(
    app: Flask, hooks: StripeHooks, stub: FakeStripe
) -> None:
    hooks.on("invoice")(lambda event, **kw: None)
    create_on_stripe(app)
    client = app.test_client()
    assert client.get(f"{ADMIN}/health").status_code == 401
    page = client.get(f"{ADMIN}/health", auth=("admin", "pw"))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    with app.app_context():
        findings = health.problems(health.check_all(app.extensions["stripe_hooks"]))
    assert [f.code for f in findings] == ["handler-not-covered", "unused-types"]
    for finding in findings:
        assert finding.code in html
    assert "whsec_" not in html


def test_doctor_checks_thin_event_destinations(
    app: Flask, hooks: StripeHooks, stub: FakeStripe
) -> None:
    hooks.on("v1.billing.meter")(lambda event, **kw: None)
    args = ["create-endpoint", "--payload", "thin", "--base-url", "https://shop.example.com"]
    made = app.test_cli_runner().invoke(
        args=["stripe-hooks", *args, "--events", "v1.billing.meter.*"]
    )
    assert made.exit_code == 0, made.output
    (endpoint,) = rows(app, WebhookEndpoint)
    assert endpoint.thin
    assert doctor(app).exit_code == 0  # no API version to drift: thin events have none

    destination = stub.destinations[endpoint.stripe_id]
    destination["status"] = "disabled"
    stub.destination_urls[endpoint.stripe_id] = "https://shop.example.com/elsewhere/"
    destination["events_from"] = ["@accounts"]
    assert codes(app) == {"disabled-on-stripe", "wrong-url", "connect"}
    retrieve = stub.calls("GET")[-1]
    assert retrieve.path == f"/v2/core/event_destinations/{endpoint.stripe_id}"


def test_doctor_without_a_key_notes_it_and_a_refused_key_is_a_problem(
    app_factory: Any, stub: FakeStripe
) -> None:
    app = app_factory(STRIPE_TEST_SECRET_KEY=TEST_KEY, STRIPE_HOOKS_API_BASE=stub.url)
    create_on_stripe(app)
    keyless = app_factory(STRIPE_HOOKS_API_BASE=stub.url)
    result = doctor(keyless)
    assert result.exit_code == 0, result.output
    assert "stripe-skipped" in result.output and "STRIPE_TEST_SECRET_KEY" in result.output
    refused = app_factory(STRIPE_TEST_SECRET_KEY="sk_test_revoked", STRIPE_HOOKS_API_BASE=stub.url)
    result = doctor(refused)
    assert result.exit_code == 1 and "stripe-error" in result.output
    assert "sk_test_revoked" not in result.output


def test_upgrade_endpoint_creates_a_twin_on_the_new_version(
    app: Flask, hooks: StripeHooks, stub: FakeStripe
) -> None:
    hooks.on("customer")(lambda event, **kw: None)
    old = create_on_stripe(app)
    result = app.test_cli_runner().invoke(
        args=["stripe-hooks", "upgrade-endpoint", str(old.uuid), "--api-version", "2024-06-20"]
    )
    assert result.exit_code == 0, result.output
    (new,) = [e for e in rows(app, WebhookEndpoint) if e.id != old.id]
    remote = stub.endpoints[new.stripe_id]
    assert remote["api_version"] == "2024-06-20"
    assert remote["enabled_events"] == stub.endpoints[old.stripe_id]["enabled_events"]
    assert remote["url"] == f"https://shop.example.com/stripe/webhook/{new.uuid}/"
    assert stub.endpoints[old.stripe_id]["status"] == "enabled"
    assert f"update-endpoint {old.uuid} --disable" in result.output
    drift = doctor(app)  # the new one is pinned to another version than stripe-python's
    assert f"endpoint {new.uuid}" in drift.output and "2024-06-20" in drift.output
