"""Endpoints on Stripe through the CLI: what stripe-python sends, what is stored, what is shown.

Stripe is ``flask_stripe_hooks.testing.FakeStripe``, reached by the real stripe-python through
``STRIPE_HOOKS_API_BASE``; the database is SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_stripe_hooks import StripeHooks, event_types
from flask_stripe_hooks import endpoints as endpoint_ops
from flask_stripe_hooks.errors import StripeAPIError
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery, WebhookEndpoint
from flask_stripe_hooks.stripe_api import client_for
from flask_stripe_hooks.testing import FakeStripe, build_event, deliver, new_secret

from support.helpers import handled, record, rows, serve_wsgi

TEST_KEY, LIVE_KEY = "sk_test_stub", "sk_live_stub"


@pytest.fixture(scope="module")
def stub() -> Iterator[FakeStripe]:
    with FakeStripe(keys={TEST_KEY, LIVE_KEY, "sk_test_eu"}) as server:
        yield server


@pytest.fixture
def app(app_factory: Any, stub: FakeStripe) -> Flask:
    stub.reset()
    return app_factory(  # type: ignore[no-any-return]
        STRIPE_TEST_SECRET_KEY=TEST_KEY,
        STRIPE_LIVE_SECRET_KEY=LIVE_KEY,
        STRIPE_API_VERSION="2025-03-31.basil",
        STRIPE_HOOKS_API_BASE=stub.url,
    )


def invoke(app: Flask, stub: FakeStripe, *args: str, input: str | None = None) -> Any:
    """Run ``flask stripe-hooks ARGS``; assert no secret or key appears in its output."""
    result = app.test_cli_runner().invoke(args=["stripe-hooks", *args], input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    stored = [s["secret"] for e in rows(app, WebhookEndpoint) for s in e.secrets]
    for secret in [*stub.secrets.values(), *stored, TEST_KEY, LIVE_KEY, "sk_test_eu"]:
        assert secret not in result.output
    assert "Traceback" not in result.output
    return result


def one(app: Flask) -> WebhookEndpoint:
    (endpoint,) = rows(app, WebhookEndpoint)
    return endpoint


# -- create ---------------------------------------------------------------------------------


def test_create_endpoint_sends_what_stripe_expects_and_stores_the_secret(
    app: Flask, stub: FakeStripe, client: Any
) -> None:
    result = invoke(
        app,
        stub,
        "create-endpoint",
        "--base-url",
        "https://shop.example.com/",
        "--events",
        "customer.subscription.*",
        "--events",
        "invoice.paid,invoice.payment_failed",
        "--description",
        "Billing",
        "--metadata",
        "team=billing",
    )
    assert result.exit_code == 0, result.output
    endpoint = one(app)
    (call,) = stub.calls()
    assert (call.method, call.path) == ("POST", "/v1/webhook_endpoints")
    assert call.headers["Authorization"] == f"Bearer {TEST_KEY}"
    assert call.headers["Stripe-Version"] == "2025-03-31.basil"
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    url = f"https://shop.example.com/stripe/webhook/{endpoint.uuid}/"
    subscription_types = event_types.matching("customer.subscription")
    expected_events = sorted([*subscription_types, "invoice.paid", "invoice.payment_failed"])
    assert call.form == {
        "url": url,
        "enabled_events": expected_events,
        "api_version": "2025-03-31.basil",
        "metadata": {"team": "billing", "flask_stripe_hooks_uuid": str(endpoint.uuid)},
        "description": "Billing",
    }
    assert ("enabled_events[0]", expected_events[0]) in call.pairs  # Stripe's array encoding
    assert "customer.subscription.*" not in call.form["enabled_events"]

    assert (endpoint.url, endpoint.mode, endpoint.status) == (url, "test", "enabled")
    assert endpoint.stripe_id in stub.endpoints
    assert endpoint.enabled_events == expected_events
    assert endpoint.metadata_ == {"team": "billing"}
    assert [s["secret"] for s in endpoint.secrets] == [stub.secrets[endpoint.stripe_id]]
    for shown in (str(endpoint.uuid), url, endpoint.stripe_id, "test"):
        assert shown in result.output

    # Stripe's one-time secret works at once: an event it signs is accepted.
    response = deliver(client, endpoint, build_event("invoice.paid"))
    assert response.status_code == 200, response.get_data(as_text=True)


def test_create_live_connect_endpoint_with_all_events(app: Flask, stub: FakeStripe) -> None:
    result = invoke(
        app, stub, "create-endpoint", "--base-url", "https://shop.example.com", "--mode", "live",
        "--connect", "--api-version", "2024-06-20",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (call,) = stub.calls()
    assert call.api_key == LIVE_KEY
    assert call.form["enabled_events"] == ["*"]
    assert call.form["connect"] == "true"
    assert call.form["api_version"] == "2024-06-20"
    endpoint = one(app)
    assert (endpoint.livemode, endpoint.connect, endpoint.api_version) == (True, True, "2024-06-20")
    assert "live" in result.output


def test_named_account_uses_its_key_and_connected_account(
    app_factory: Any, stub: FakeStripe
) -> None:
    stub.reset()
    app = app_factory(
        STRIPE_HOOKS_API_BASE=stub.url,
        STRIPE_HOOKS_ACCOUNTS={
            "eu": {"test_secret_key": "sk_test_eu", "stripe_account": "acct_1EU"}
        },
    )
    result = invoke(
        app, stub, "create-endpoint", "--base-url", "https://eu.example.com", "--account", "eu"
    )
    assert result.exit_code == 0, result.output
    (call,) = stub.calls()
    assert call.api_key == "sk_test_eu"
    assert call.headers["Stripe-Account"] == "acct_1EU"
    assert one(app).account == "eu"

    result = invoke(app, stub, "create-endpoint", "--base-url", "https://x.example.com",
                    "--account", "us")  # fmt: skip
    assert result.exit_code == 1
    assert "No account 'us' in STRIPE_HOOKS_ACCOUNTS (configured: 'eu')" in result.output
    result = invoke(app, stub, "create-endpoint", "--base-url", "https://x.example.com")
    assert "No test secret key is configured: set STRIPE_TEST_SECRET_KEY." in result.output
    assert len(stub.calls()) == 1


# -- refused before any call -------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    [
        "http://localhost:5000",
        "http://127.0.0.1:5000",
        "http://[::1]:5000",
        "https://10.1.2.3",
        "https://192.168.1.20/app",
        "http://169.254.169.254",
        "http://app.localhost",
        "http://devbox",
        "http://[::ffff:127.0.0.1]",
    ],
)
def test_local_base_url_is_refused_with_a_pointer_to_listen(
    app: Flask, stub: FakeStripe, base_url: str
) -> None:
    result = invoke(app, stub, "create-endpoint", "--base-url", base_url)
    assert result.exit_code == 1
    assert "not a public address" in result.output
    assert "flask stripe-hooks listen" in result.output
    assert stub.calls() == []
    assert rows(app, WebhookEndpoint) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base-url", "ftp://example.com"], "is not an http(s) URL"),
        (["--base-url", "https://example.com?x=1"], "no query string"),
        (["--base-url", "http://shop.example.com", "--mode", "live"], "only to https://"),
        (["--base-url", "https://example.com", "--events", "customer.creatd"],
         "'customer.creatd' is not a Stripe event type; did you mean 'customer.created'?"),
        (["--base-url", "https://example.com", "--events", "customer.subscription.x*"],
         "is not a Stripe event type"),
        (["--base-url", "https://example.com", "--metadata", "novalue"], "KEY=VALUE"),
        (["--base-url", "https://example.com", "--api-version", "latest"],
         "'latest' is not a Stripe API version"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_before_any_call(
    app: Flask, stub: FakeStripe, args: list[str], message: str
) -> None:
    result = invoke(app, stub, "create-endpoint", *args)
    assert result.exit_code == 1
    assert message in result.output
    assert stub.calls() == []
    assert rows(app, WebhookEndpoint) == []


def test_missing_live_key_names_the_setting(app_factory: Any, stub: FakeStripe) -> None:
    stub.reset()
    app = app_factory(STRIPE_TEST_SECRET_KEY=TEST_KEY, STRIPE_HOOKS_API_BASE=stub.url)
    result = invoke(
        app, stub, "create-endpoint", "--base-url", "https://example.com", "--mode", "live"
    )
    assert result.exit_code == 1
    assert "No live secret key is configured: set STRIPE_LIVE_SECRET_KEY." in result.output
    assert stub.calls() == []


# -- Stripe's refusals -------------------------------------------------------------------------


def test_rejected_key(app_factory: Any, stub: FakeStripe) -> None:
    stub.reset()
    app = app_factory(
        STRIPE_TEST_SECRET_KEY="sk_test_revoked123456", STRIPE_HOOKS_API_BASE=stub.url
    )
    result = invoke(app, stub, "create-endpoint", "--base-url", "https://example.com")
    assert result.exit_code == 1
    assert "Stripe rejected the test secret key; check STRIPE_TEST_SECRET_KEY" in result.output
    assert "sk_test_revoked123456" not in result.output and "revoked" not in result.output
    assert stub.calls()[0].api_key == "sk_test_revoked123456"
    assert rows(app, WebhookEndpoint) == []


def test_sixteen_endpoint_limit(app: Flask, stub: FakeStripe) -> None:
    for i in range(16):
        stub.add_endpoint(url=f"https://other{i}.example.com/hook")
    result = invoke(app, stub, "create-endpoint", "--base-url", "https://example.com")
    assert result.exit_code == 1
    assert "Stripe allows at most 16 endpoints per account in test mode" in result.output
    assert "delete-endpoint" in result.output
    assert rows(app, WebhookEndpoint) == []
    # The limit is per mode: live mode still has room.
    result = invoke(app, stub, "create-endpoint", "--base-url", "https://example.com",
                    "--mode", "live")  # fmt: skip
    assert result.exit_code == 0, result.output


def test_stripe_field_error_names_the_field(app: Flask, stub: FakeStripe) -> None:
    result = invoke(app, stub, "create-endpoint", "--base-url", "https://shop.invalid")
    assert result.exit_code == 1
    assert "Invalid URL: URL must be publicly accessible" in result.output
    with app.app_context(), pytest.raises(StripeAPIError) as caught:
        endpoint_ops.create_endpoint(base_url="https://shop.invalid")
    assert caught.value.field == "url"
    assert caught.value.status == 400
    assert rows(app, WebhookEndpoint) == []


def test_stripe_down_and_internal_errors(app: Flask, stub: FakeStripe) -> None:
    stub.fail_next(429, {"type": "invalid_request_error", "message": "Too many requests"})
    result = invoke(app, stub, "sync-endpoints")
    assert "Stripe is limiting the rate of requests; try again in a minute." in result.output
    for _ in range(3):  # stripe-python retries a 500 twice
        stub.fail_next(500, {"type": "api_error", "message": "Something went wrong"})
    result = invoke(app, stub, "sync-endpoints")
    assert "Stripe had an internal error; try again in a moment." in result.output
    stub.reset()
    with app.app_context():
        state = app.extensions["stripe_hooks"]
        state.api_base = "http://127.0.0.1:9"  # nothing listens
        state.clients.clear()
    result = invoke(app, stub, "sync-endpoints")
    assert result.exit_code == 1
    assert "Could not reach the Stripe API at http://127.0.0.1:9" in result.output


def test_database_failure_after_create_deletes_the_endpoint_on_stripe(
    app: Flask, stub: FakeStripe
) -> None:
    result = invoke(app, stub, "register-endpoint", "--secret", new_secret(),
                    "--stripe-id", "we_taken")  # fmt: skip
    assert result.exit_code == 0, result.output
    stub.next_id = "we_taken"  # Stripe answers with an id that a row here holds already
    result = invoke(app, stub, "create-endpoint", "--base-url", "https://example.com")
    assert result.exit_code == 1
    assert "The database refused the new endpoint" in result.output
    assert "it was deleted on Stripe again" in result.output
    assert [(c.method, c.path) for c in stub.calls()] == [
        ("POST", "/v1/webhook_endpoints"),
        ("DELETE", "/v1/webhook_endpoints/we_taken"),
    ]
    assert stub.endpoints == {}
    assert [e.stripe_id for e in rows(app, WebhookEndpoint)] == ["we_taken"]


# -- update, delete ----------------------------------------------------------------------------


def created(app: Flask, **kwargs: Any) -> WebhookEndpoint:
    with app.app_context():
        endpoint = endpoint_ops.create_endpoint(base_url="https://example.com", **kwargs)
        return endpoint_ops.get_endpoint(endpoint.uuid)


def test_update_endpoint_syncs_to_stripe(app: Flask, stub: FakeStripe, client: Any) -> None:
    endpoint = created(app)
    stub.requests.clear()  # keep the endpoints, forget the calls
    result = invoke(app, stub, "update-endpoint", str(endpoint.uuid), "--disable", "--events",
                    "customer.subscription.*", "--description", "paused")  # fmt: skip
    assert result.exit_code == 0, result.output
    (call,) = stub.calls()
    assert (call.method, call.path) == ("POST", f"/v1/webhook_endpoints/{endpoint.stripe_id}")
    assert call.form == {
        "disabled": "true",
        "enabled_events": event_types.matching("customer.subscription"),
        "description": "paused",
    }
    assert stub.endpoints[endpoint.stripe_id]["status"] == "disabled"
    stored = one(app)
    assert (stored.status, stored.description) == ("disabled", "paused")
    assert stored.enabled_events == event_types.matching("customer.subscription")
    # A disabled endpoint takes no deliveries.
    assert deliver(client, stored, build_event("customer.created")).status_code == 404

    result = invoke(app, stub, "update-endpoint", str(endpoint.uuid), "--enable")
    assert result.exit_code == 0, result.output
    assert stub.calls()[-1].form == {"disabled": "false"}
    assert one(app).status == "enabled"
    assert deliver(client, stored, build_event("customer.created")).status_code == 200


def test_update_refusals_change_nothing(app: Flask, stub: FakeStripe) -> None:
    endpoint = created(app)
    stub.requests.clear()
    result = invoke(app, stub, "update-endpoint", str(endpoint.uuid))
    assert "Nothing to change" in result.output
    result = invoke(app, stub, "update-endpoint", str(endpoint.uuid), "--events", "invoice.pai")
    assert "did you mean 'invoice.paid'?" in result.output
    assert stub.calls() == []
    stub.fail_next(400, {"type": "invalid_request_error", "message": "Invalid description",
                         "param": "description"})  # fmt: skip
    result = invoke(app, stub, "update-endpoint", str(endpoint.uuid), "--description", "x" * 10)
    assert result.exit_code == 1
    assert "Invalid description" in result.output
    assert one(app).description == ""
    result = invoke(app, stub, "update-endpoint", str(uuid.uuid4()), "--enable")
    assert "No endpoint" in result.output


def test_update_local_endpoint_makes_no_call(app: Flask, stub: FakeStripe, endpoint: Any) -> None:
    result = invoke(app, stub, "update-endpoint", str(endpoint.uuid), "--disable")
    assert result.exit_code == 0, result.output
    assert one(app).status == "disabled"
    assert stub.calls() == []


def test_delete_endpoint(app: Flask, stub: FakeStripe, client: Any) -> None:
    endpoint = created(app)
    assert deliver(client, endpoint, build_event("customer.created")).status_code == 200
    result = invoke(app, stub, "delete-endpoint", str(endpoint.uuid))
    assert result.exit_code == 0, result.output
    assert f"Deleted endpoint {endpoint.uuid} and on Stripe." in result.output
    assert stub.calls()[-1].method == "DELETE"
    assert stub.endpoints == {}
    assert rows(app, WebhookEndpoint) == [] and rows(app, WebhookDelivery) == []
    (event,) = rows(app, StripeEvent)  # the events stay
    assert event.endpoint_id is None


def test_delete_endpoint_gone_on_stripe_or_kept(app: Flask, stub: FakeStripe) -> None:
    gone, kept = created(app), created(app)
    stub.endpoints.pop(gone.stripe_id)  # deleted in the Dashboard meanwhile
    result = invoke(app, stub, "delete-endpoint", str(gone.uuid))
    assert result.exit_code == 0, result.output
    assert stub.calls()[-1].method == "DELETE"
    result = invoke(app, stub, "delete-endpoint", kept.stripe_id, "--keep-remote")
    assert result.exit_code == 0, result.output
    assert "(kept on Stripe)" in result.output
    assert list(stub.endpoints) == [kept.stripe_id]
    assert rows(app, WebhookEndpoint) == []


def test_delete_refused_by_stripe_keeps_the_row(app: Flask, stub: FakeStripe) -> None:
    endpoint = created(app)
    stub.fail_next(401, {"type": "invalid_request_error", "message": "Invalid API Key"})
    result = invoke(app, stub, "delete-endpoint", str(endpoint.uuid))
    assert result.exit_code == 1
    assert "Stripe rejected the test secret key" in result.output
    assert one(app).uuid == endpoint.uuid


# -- sync ------------------------------------------------------------------------------------


def test_sync_endpoints(app: Flask, stub: FakeStripe, client: Any) -> None:
    known = created(app, events=["customer.created"])
    stale = created(app)
    stub.endpoints.pop(stale.stripe_id)
    stub.endpoints[known.stripe_id].update(description="edited in the Dashboard",
                                           enabled_events=["invoice.paid"])  # fmt: skip
    foreign = stub.add_endpoint(enabled_events=["charge.succeeded"], description="Zapier")
    stub.add_endpoint(livemode=True)  # another mode: not listed with the test key
    stub.requests.clear()

    result = invoke(app, stub, "sync-endpoints")
    assert result.exit_code == 0, result.output
    assert "1 updated, 1 imported, 0 unchanged, 1 missing on Stripe." in result.output
    assert "set-secret" in result.output and f"{stale.uuid}" in result.output
    call, destinations = stub.calls()  # and the v2 event destinations (thin endpoints)
    assert (call.method, call.path, call.query) == ("GET", "/v1/webhook_endpoints",
                                                    {"limit": "100"})  # fmt: skip
    assert (destinations.method, destinations.path) == ("GET", "/v2/core/event_destinations")
    by_id = {e.stripe_id: e for e in rows(app, WebhookEndpoint)}
    assert by_id[known.stripe_id].description == "edited in the Dashboard"
    assert by_id[known.stripe_id].enabled_events == ["invoice.paid"]
    imported = by_id[foreign["id"]]
    assert (imported.status, imported.secrets, imported.url) == (
        "disabled", [], "https://elsewhere.example/hook"
    )  # fmt: skip
    assert str(imported.uuid) in result.output

    result = invoke(app, stub, "update-endpoint", str(imported.uuid), "--enable")
    assert result.exit_code == 1
    assert "has no signing secret; set one with 'flask stripe-hooks set-secret" in result.output
    secret = new_secret()
    assert invoke(app, stub, "set-secret", str(imported.uuid), secret).exit_code == 0
    assert invoke(app, stub, "update-endpoint", str(imported.uuid), "--enable").exit_code == 0
    event = build_event("charge.succeeded")
    response = deliver(client, str(imported.uuid), event, secret=secret)
    assert response.status_code == 200

    result = invoke(app, stub, "sync-endpoints")
    assert "0 updated, 0 imported, 2 unchanged, 1 missing on Stripe." in result.output


def test_sync_links_a_registered_endpoint_by_its_uuid(app: Flask, stub: FakeStripe) -> None:
    result = invoke(app, stub, "register-endpoint", "--secret", new_secret())
    endpoint = one(app)
    remote = stub.add_endpoint(metadata={"flask_stripe_hooks_uuid": str(endpoint.uuid)})
    result = invoke(app, stub, "sync-endpoints")
    assert "1 updated, 0 imported, 0 unchanged." in result.output
    linked = one(app)
    assert (linked.stripe_id, linked.status) == (remote["id"], "enabled")


# -- set-secret ------------------------------------------------------------------------------


def test_set_secret_rotation_keeps_the_old_secret_until_it_expires(
    app: Flask, stub: FakeStripe, client: Any, endpoint: Any, secret: str
) -> None:
    new = new_secret()
    result = invoke(app, stub, "set-secret", str(endpoint.uuid), new, "--keep-old-for", "2s")
    assert result.exit_code == 0, result.output
    assert "the previous one is accepted until" in result.output
    stored = one(app).secrets
    assert [s["secret"] for s in stored] == [secret, new]
    expires = datetime.fromisoformat(stored[0]["expires_at"])

    assert (
        deliver(client, endpoint, build_event("customer.created"), secret=secret).status_code == 200
    )
    assert deliver(client, endpoint, build_event("customer.created"), secret=new).status_code == 200
    time.sleep(max(0.0, expires.timestamp() - time.time()) + 0.2)
    response = deliver(client, endpoint, build_event("customer.created"), secret=secret)
    assert response.status_code == 400
    assert response.get_data(as_text=True).strip() == "signature does not match"
    assert deliver(client, endpoint, build_event("customer.created"), secret=new).status_code == 200
    assert stub.calls() == []  # Stripe's API cannot roll a secret; nothing is sent


def test_set_secret_without_keep_drops_the_old_one(
    app: Flask, stub: FakeStripe, client: Any, endpoint: Any, secret: str
) -> None:
    new = new_secret()
    # Prompted for, hidden, when not on the command line.
    result = invoke(app, stub, "set-secret", str(endpoint.uuid), input=new + "\n")
    assert result.exit_code == 0, result.output
    assert "previous secrets are no longer accepted" in result.output
    assert (
        deliver(client, endpoint, build_event("customer.created"), secret=secret).status_code == 400
    )
    assert deliver(client, endpoint, build_event("customer.created"), secret=new).status_code == 200


def test_set_secret_refusals(app: Flask, stub: FakeStripe, endpoint: Any, secret: str) -> None:
    result = invoke(app, stub, "set-secret", str(endpoint.uuid), "sk_test_notasecret")
    assert result.exit_code == 1
    assert "A signing secret starts with 'whsec_'" in result.output
    result = invoke(
        app, stub, "set-secret", str(endpoint.uuid), new_secret(), "--keep-old-for", "1 week"
    )
    assert "--keep-old-for" in result.output and "30s, 5m, 2h or 3d" in result.output
    assert [s["secret"] for s in one(app).secrets] == [secret]


# -- listen ----------------------------------------------------------------------------------

FAKE_STRIPE = textwrap.dedent(
    """\
    #!{python}
    # Stands in for the Stripe CLI, which needs Stripe's servers: prints the secret, then
    # forwards one signed event to --forward-to, as 'stripe listen' does.
    import json, os, sys, urllib.request
    sys.path[:0] = {path!r}
    from flask_stripe_hooks.testing import build_event, sign_payload
    SECRET = {secret!r}
    with open({log!r}, "a") as log:
        log.write(json.dumps([sys.argv[1:], os.environ.get("STRIPE_API_KEY")]) + "\\n")
    args = sys.argv[1:]
    if args == ["listen", "--print-secret"]:
        print(SECRET)
        sys.exit(0)
    target = args[args.index("--forward-to") + 1]
    body, header = sign_payload(build_event("customer.created", event_id="evt_listen"), SECRET)
    request = urllib.request.Request(target, data=body.encode(), method="POST", headers={{
        "Stripe-Signature": header, "Content-Type": "application/json"}})
    with urllib.request.urlopen(request) as response:
        print("<--", response.status, "[POST]", target)
    """
)


def test_listen_records_a_temporary_endpoint_and_removes_it(
    app: Flask, hooks: StripeHooks, stub: FakeStripe, tmp_path: Path, monkeypatch: Any
) -> None:
    @hooks.on("customer.created")
    def note(event: Any, **kwargs: Any) -> None:
        record(app, event.id, "listen")

    secret, log = new_secret(), tmp_path / "calls.jsonl"
    fake = tmp_path / "bin" / "stripe"
    fake.parent.mkdir()
    fake.write_text(FAKE_STRIPE.format(python=sys.executable, path=sys.path, secret=secret,
                                       log=str(log)))  # fmt: skip
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    base, stop = serve_wsgi(app)
    try:
        result = invoke(app, stub, "listen", "--forward-to", base, "--events", "customer.created")
    finally:
        stop()
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    assert "Temporary test-mode endpoint" in result.output
    assert "Removed the temporary endpoint" in result.output
    assert handled(app) == [("evt_listen", "listen")]
    assert rows(app, WebhookEndpoint) == []  # removed on exit
    calls = log.read_text().splitlines()
    assert len(calls) == 2
    (first, key1), (second, key2) = (json.loads(c) for c in calls)
    assert first == ["listen", "--print-secret"]
    assert second[:2] == ["listen", "--forward-to"]
    assert second[2].startswith(f"{base}/stripe/webhook/")
    assert second[3:] == ["--events", "customer.created"]
    assert key1 == key2 == TEST_KEY  # the configured test key, through the environment
    assert stub.calls() == []


def test_listen_without_the_stripe_cli(app: Flask, stub: FakeStripe, tmp_path: Path,
                                       monkeypatch: Any) -> None:  # fmt: skip
    monkeypatch.setenv("PATH", str(tmp_path))
    result = invoke(app, stub, "listen")
    assert result.exit_code == 1
    assert "The Stripe CLI ('stripe') is not on PATH" in result.output
    assert "npm install -g @stripe/cli" in result.output
    assert rows(app, WebhookEndpoint) == []


# -- the API layer on its own ------------------------------------------------------------------


def test_client_for_keys_by_prefix_and_cache(app_factory: Any, stub: FakeStripe) -> None:
    app = app_factory(STRIPE_SECRET_KEY=LIVE_KEY, STRIPE_HOOKS_API_BASE=stub.url)
    state = app.extensions["stripe_hooks"]
    assert client_for(state, livemode=True) is client_for(state, livemode=True)
    with pytest.raises(StripeAPIError, match="No test secret key is configured"):
        client_for(state)
    app = app_factory(STRIPE_TEST_SECRET_KEY=LIVE_KEY)
    with pytest.raises(StripeAPIError) as caught:
        client_for(app.extensions["stripe_hooks"])
    assert str(caught.value) == (
        "STRIPE_TEST_SECRET_KEY holds a live-mode key; put a test-mode key (sk_test_...) there."
    )
    assert LIVE_KEY not in str(caught.value)
