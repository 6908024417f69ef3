"""flask stripe-hooks: register-endpoint, list-endpoints, events, event-types,
send-test-event, reprocess."""

from __future__ import annotations

import re

import pytest
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery, WebhookEndpoint
from flask_stripe_hooks.testing import build_event, deliver

from support.helpers import handled, record, rows, serve_wsgi


@pytest.fixture
def recorder(app, hooks):
    @hooks.on("*")
    def every(event, **kwargs):
        record(app, event.id, event.type)


def register(runner, secret, *args):
    return runner.invoke(args=["stripe-hooks", "register-endpoint", "--secret", secret, *args])


def test_register_endpoint_prints_uuid_and_path_not_secret(app, runner, secret):
    result = register(
        runner,
        secret,
        "--mode",
        "live",
        "--stripe-id",
        "we_123",
        "--description",
        "Dashboard endpoint",
    )
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    (endpoint,) = rows(app, WebhookEndpoint)
    assert endpoint.livemode and endpoint.stripe_id == "we_123"
    assert endpoint.secrets[0]["secret"] == secret
    assert str(endpoint.uuid) in result.output
    assert f"/stripe/webhook/{endpoint.uuid}/" in result.output


def test_register_endpoint_errors(app, runner, secret):
    result = register(runner, "sk_test_notasecret")
    assert result.exit_code != 0 and "whsec_" in result.output
    assert "sk_test_notasecret" not in result.output
    assert "Traceback" not in result.output
    assert register(runner, secret, "--stripe-id", "we_1").exit_code == 0
    again = register(runner, secret, "--stripe-id", "we_1")
    assert again.exit_code != 0 and "already" in again.output
    assert register(runner, secret, "--stripe-id", "xx").exit_code != 0
    assert len(rows(app, WebhookEndpoint)) == 1


def test_register_endpoint_prompts_hidden(app, runner, secret):
    result = runner.invoke(args=["stripe-hooks", "register-endpoint"], input=secret + "\n")
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    assert rows(app, WebhookEndpoint)[0].secrets[0]["secret"] == secret


def test_list_endpoints_never_shows_secrets(app, runner, endpoint, secret):
    result = runner.invoke(args=["stripe-hooks", "list-endpoints"])
    assert result.exit_code == 0
    assert str(endpoint.uuid) in result.output and "1 active secret" in result.output
    assert secret not in result.output and "whsec_" not in result.output


def test_send_test_event_in_process(app, runner, endpoint, recorder, secret):
    result = runner.invoke(
        args=[
            "stripe-hooks",
            "send-test-event",
            "customer.created",
            "--data",
            '{"email": "x@example.com"}',
        ]
    )
    assert result.exit_code == 0, result.output
    assert "200 processed" in result.output and secret not in result.output
    event_id = re.search(r"(evt_\w+)", result.output).group(1)
    assert handled(app) == [(event_id, "customer.created")]
    (stored,) = rows(app, StripeEvent)
    assert stored.data["object"]["email"] == "x@example.com"


def test_send_test_event_handler_rollback_does_not_touch_the_command(app, hooks, runner, endpoint):
    @hooks.on("charge.failed")
    def boom(event, **kwargs):
        raise RuntimeError("nope")

    result = runner.invoke(args=["stripe-hooks", "send-test-event", "charge.failed"])
    assert result.exit_code == 1 and "500" in result.output
    (stored,) = rows(app, StripeEvent)
    assert stored.status == "failed"


def test_send_test_event_errors(app, runner, endpoint):
    bad_type = runner.invoke(args=["stripe-hooks", "send-test-event", "custmer.created"])
    assert bad_type.exit_code != 0 and "customer.created" in bad_type.output
    bad_json = runner.invoke(
        args=["stripe-hooks", "send-test-event", "customer.created", "--data", "{"]
    )
    assert bad_json.exit_code != 0 and "not valid JSON" in bad_json.output
    missing = runner.invoke(
        args=["stripe-hooks", "send-test-event", "customer.created", "--endpoint", "nope"]
    )
    assert missing.exit_code != 0 and "list-endpoints" in missing.output
    assert rows(app, StripeEvent) == []


def test_send_test_event_to_a_running_server(app, runner, endpoint, recorder):
    base, stop = serve_wsgi(app)
    try:
        result = runner.invoke(
            args=["stripe-hooks", "send-test-event", "invoice.paid", "--url", base]
        )
    finally:
        stop()
    assert result.exit_code == 0, result.output
    assert "200 processed" in result.output
    assert [t for _, t in handled(app)] == ["invoice.paid"]
    unreachable = runner.invoke(
        args=["stripe-hooks", "send-test-event", "invoice.paid", "--url", "http://127.0.0.1:1"]
    )
    assert unreachable.exit_code != 0 and "Could not reach" in unreachable.output


def test_events_listing_and_filters(app, hooks, client, runner, endpoint):
    @hooks.on("charge.failed")
    def boom(event, **kwargs):
        raise RuntimeError("declined")

    deliver(client, endpoint, build_event("customer.created"))
    deliver(client, endpoint, build_event("customer.subscription.updated"))
    deliver(client, endpoint, build_event("customer_cash_balance_transaction.created"))
    deliver(client, endpoint, build_event("charge.failed"))
    out = runner.invoke(args=["stripe-hooks", "events", "--type", "customer"]).output
    assert "customer.created" in out and "customer.subscription.updated" in out
    assert "customer_cash_balance_transaction" not in out
    failed = runner.invoke(args=["stripe-hooks", "events", "--status", "failed"]).output
    assert "charge.failed" in failed and "declined" in failed and "customer" not in failed
    limited = runner.invoke(args=["stripe-hooks", "events", "--limit", "1"]).output
    header, row, more = limited.strip().splitlines()  # and where the older ones are
    assert header.split()[:2] == ["id", "type"] and row.startswith("evt_")
    assert "charge.failed" in row and more.startswith("4 match; older ones: --before ")


def test_event_types(runner):
    out = runner.invoke(args=["stripe-hooks", "event-types", "customer.subscription"]).output
    assert "customer.subscription.trial_will_end" in out and "invoice.paid" not in out
    bad = runner.invoke(args=["stripe-hooks", "event-types", "custmer"])
    assert bad.exit_code != 0 and "customer" in bad.output


def test_reprocess_runs_handlers_again(app, hooks, client, runner, endpoint):
    attempts = []

    @hooks.on("charge.failed")
    def flaky(event, **kwargs):
        attempts.append(event.id)
        if len(attempts) == 1:
            raise RuntimeError("transient")
        record(app, event.id, "ok")

    event = build_event("charge.failed")
    assert deliver(client, endpoint, event).status_code == 500
    result = runner.invoke(args=["stripe-hooks", "reprocess", event["id"]])
    assert result.exit_code == 0, result.output
    assert "processed" in result.output
    assert handled(app) == [(event["id"], "ok")]
    (stored,) = rows(app, StripeEvent)
    assert stored.status == "processed" and stored.attempts == 2
    # Explicit reprocess of a processed event runs the handlers again.
    assert runner.invoke(args=["stripe-hooks", "reprocess", event["id"]]).exit_code == 0
    assert len(handled(app)) == 2
    missing = runner.invoke(args=["stripe-hooks", "reprocess", "evt_missing"])
    assert missing.exit_code != 0 and "no stored event" in missing.output
    assert len(rows(app, WebhookDelivery)) == 1
