"""Trust boundaries on the receiving path: the address allowlist (behind ProxyFix), Stripe's
list refreshed from a local server, bounded storage of rejected floods, what of a delivery is
kept (STORE_BODY, REDACT, headers) and erasing one customer's events."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_stripe_hooks import StripeHooks, ips, signals
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery
from flask_stripe_hooks.pipeline import guard
from flask_stripe_hooks.testing import build_event, create_endpoint, deliver, sign_payload
from werkzeug.middleware.proxy_fix import ProxyFix

from support.helpers import handled, make_app, record, rows

SHIPPED = json.loads((Path(ips.__file__).parent / "data" / ips.IPS_FILE).read_text("utf-8"))[
    "WEBHOOKS"
]


def post_from(client, endpoint, event, forwarded_for, **kwargs):
    """Deliver through a proxy at 127.0.0.1 that appends the client's address."""
    return deliver(
        client,
        endpoint,
        event,
        headers={"X-Forwarded-For": forwarded_for},
        **kwargs,
    )


def behind_proxy(app):
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)
    return app


@pytest.fixture
def endpoint_of():
    def make(app):
        with app.app_context():
            return create_endpoint(app.extensions["sqlalchemy"])

    return make


# -- the allowlist -----------------------------------------------------------------------------


def test_shipped_list_is_stripes_webhook_addresses():
    assert len(SHIPPED) == 15
    assert {"3.18.12.63", "54.187.174.169"} <= set(SHIPPED)
    assert ips.stripe_ips() == SHIPPED


def test_allowlist_behind_proxyfix(app_factory, endpoint_of):
    app = behind_proxy(
        app_factory(STRIPE_HOOKS_ALLOWED_IPS=["stripe", "10.0.0.0/8", "2600:1f18::/32"])
    )
    endpoint = endpoint_of(app)
    client = app.test_client()
    refused = []
    signals.delivery_rejected.connect(lambda sender, **kw: refused.append(kw), weak=False)
    try:
        for address in ("3.18.12.63", "54.187.174.169", "10.20.30.40", "2600:1f18::5"):
            response = post_from(client, endpoint, build_event("customer.created"), address)
            assert response.status_code == 200, address
        # A client that writes Stripe's address itself: the proxy appends the real one,
        # and x_for=1 trusts only that hop.
        for forwarded in ("8.8.8.8", "3.18.12.63, 8.8.8.8", "2600:1f19::1", "not-an-ip"):
            response = post_from(client, endpoint, build_event("customer.created"), forwarded)
            assert response.status_code == 403, forwarded
            assert response.get_data(as_text=True).strip() == "address not allowed"
    finally:
        signals.delivery_rejected.receivers.clear()
    deliveries = rows(app, WebhookDelivery)
    assert len(deliveries) == 4
    assert {d.remote_addr for d in deliveries} == {
        "3.18.12.63",
        "54.187.174.169",
        "10.20.30.40",
        "2600:1f18::5",
    }
    assert len(rows(app, StripeEvent)) == 4
    assert [r["status"] for r in refused] == [403] * 4
    assert all(r["endpoint"] is None for r in refused)


def test_refusal_stores_nothing_even_unsigned(app_factory, endpoint_of):
    app = app_factory(STRIPE_HOOKS_ALLOWED_IPS="stripe")
    endpoint = endpoint_of(app)
    client = app.test_client()
    # The test client's address is 127.0.0.1, not Stripe's.
    assert deliver(client, endpoint, build_event("customer.created")).status_code == 403
    response = client.post(f"/stripe/webhook/{endpoint.uuid}/", data=b"{}")
    assert response.status_code == 403
    assert rows(app, WebhookDelivery) == [] and rows(app, StripeEvent) == []


def test_ipv4_mapped_ipv6_and_callable(app_factory, endpoint_of):
    allows = guard.parse_allowlist(["stripe"])
    assert allows("::ffff:3.18.12.63") and not allows("::ffff:8.8.8.8")
    assert not allows(None) and not allows("")
    asked = []
    app = app_factory(STRIPE_HOOKS_ALLOWED_IPS=lambda addr: asked.append(addr) or True)
    endpoint = endpoint_of(app)
    assert deliver(app.test_client(), endpoint, build_event("customer.created")).status_code == 200
    assert asked == ["127.0.0.1"]
    refusing = app_factory(STRIPE_HOOKS_ALLOWED_IPS=lambda addr: False)
    event = build_event("customer.created")
    assert deliver(refusing.test_client(), endpoint, event).status_code == 403


@pytest.mark.parametrize(
    "value, named",
    [
        (["stripe", "10.0.0.300"], "'10.0.0.300'"),
        ("stripes", "'stripes'"),
        (["1.2.3.0/33"], "'1.2.3.0/33'"),
        ([], "[]"),
        (42, "42"),
    ],
)
def test_bad_allowlist_names_key_and_entry(tmp_path, hooks, value, named):
    with pytest.raises(RuntimeError) as info:
        make_app(f"sqlite:///{tmp_path / 'x.db'}", hooks, STRIPE_HOOKS_ALLOWED_IPS=value)
    assert "STRIPE_HOOKS_ALLOWED_IPS" in str(info.value) and named in str(info.value)


def test_refusals_are_logged_once_a_minute(app_factory, endpoint_of, caplog):
    app = app_factory(STRIPE_HOOKS_ALLOWED_IPS="stripe")
    endpoint = endpoint_of(app)
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="flask_stripe_hooks"):
        for _ in range(50):
            assert client.post(f"/stripe/webhook/{endpoint.uuid}/", data=b"x").status_code == 403
        lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(lines) == 1 and lines[0].startswith("refused 1 request")
        tally = app.extensions["stripe_hooks"].allowed_ips.refused
        assert tally.total == 50
        tally._logged -= 60  # a minute later
        client.post(f"/stripe/webhook/{endpoint.uuid}/", data=b"x")
        lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 2 and lines[1].startswith("refused 50 request")
    assert "127.0.0.1" in lines[1]


# -- refreshing Stripe's list --------------------------------------------------------------------


@pytest.fixture
def ips_server() -> Iterator[dict[str, bytes]]:
    """A local HTTP server answering ``/ips.json`` with ``served["body"]``."""
    served: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path != "/ips.json":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(served["body"])

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served["url"] = f"http://127.0.0.1:{server.server_address[1]}".encode()
    yield served
    server.shutdown()
    server.server_close()


def test_update_ips_from_a_local_server(app_factory, endpoint_of, ips_server, tmp_path):
    instance = tmp_path / "instance"
    app = app_factory(STRIPE_HOOKS_ALLOWED_IPS="stripe")
    app.instance_path = str(instance)
    url = ips_server["url"].decode() + "/ips.json"
    ips_server["body"] = json.dumps({"WEBHOOKS": ["127.0.0.1", "3.18.12.63"]}).encode()
    result = app.test_cli_runner().invoke(args=["stripe-hooks", "update-ips", "--url", url])
    assert result.exit_code == 0, result.output
    assert "Saved 2 addresses" in result.output
    saved = instance / ips.IPS_FILE
    assert json.loads(saved.read_text())["WEBHOOKS"] == ["127.0.0.1", "3.18.12.63"]
    # The package's copy is untouched; an app started now prefers the refreshed one.
    assert ips.stripe_ips() == SHIPPED
    assert ips.stripe_ips(str(instance)) == ["127.0.0.1", "3.18.12.63"]
    again = Flask(__name__, instance_path=str(instance))
    again.config.update(
        SQLALCHEMY_DATABASE_URI=app.config["SQLALCHEMY_DATABASE_URI"],
        STRIPE_HOOKS_ALLOWED_IPS="stripe",
    )
    SQLAlchemy().init_app(again)
    StripeHooks().init_app(again)
    endpoint = endpoint_of(again)
    assert (
        deliver(again.test_client(), endpoint, build_event("customer.created")).status_code == 200
    )
    with again.app_context():
        again.extensions["sqlalchemy"].engine.dispose()

    bad = {
        "not JSON": b"<html>",
        'no "WEBHOOKS" list': b'{"API": ["1.2.3.4"]}',
        "is empty": b'{"WEBHOOKS": []}',
        "'nope' is not an IP address": b'{"WEBHOOKS": ["1.2.3.4", "nope"]}',
    }
    for reason, body in bad.items():
        ips_server["body"] = body
        result = app.test_cli_runner().invoke(args=["stripe-hooks", "update-ips", "--url", url])
        assert result.exit_code == 1, reason
        assert reason in result.output and "the current list is kept" in result.output
        assert len(result.output.strip().splitlines()) == 1
        assert json.loads(saved.read_text())["WEBHOOKS"] == ["127.0.0.1", "3.18.12.63"]
    missing = ips_server["url"].decode() + "/gone.json"
    result = app.test_cli_runner().invoke(args=["stripe-hooks", "update-ips", "--url", missing])
    assert result.exit_code == 1 and "could not fetch" in result.output and "404" in result.output


# -- floods --------------------------------------------------------------------------------------


def flood(app, endpoint, n):
    client = app.test_client()
    body, header = sign_payload(build_event("customer.created"), "whsec_not_the_secret")
    statuses = set()
    for _ in range(n):
        response = client.post(
            f"/stripe/webhook/{endpoint.uuid}/", data=body, headers={"Stripe-Signature": header}
        )
        statuses.add(response.status_code)
    return statuses


@pytest.mark.slow
def test_flood_of_bad_signatures_stores_a_bounded_number(tmp_path, hooks):
    app = make_app(f"sqlite:///{tmp_path / 'flood.db'}", hooks)  # the default: 60 a minute
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    reported = []
    signals.delivery_rejected.connect(lambda sender, **kw: reported.append(kw), weak=False)
    try:
        assert flood(app, endpoint, 2_000) == {400}
    finally:
        signals.delivery_rejected.receivers.clear()
    stored = len(rows(app, WebhookDelivery))
    assert 60 <= stored <= 120  # 60 a minute; the run may cross into a second minute
    assert len(reported) == 2_000
    assert app.extensions["stripe_hooks"].rejected_limit.dropped.total == 2_000 - stored


def test_flood_limit_per_endpoint_on_each_database(app_factory, endpoint_of):
    app = app_factory(STRIPE_HOOKS_MAX_REJECTED_PER_MINUTE=5)
    first, second = endpoint_of(app), endpoint_of(app)
    assert flood(app, first, 200) == {400}
    assert flood(app, second, 3) == {400}
    counts = {e: 0 for e in (first.id, second.id)}
    for delivery in rows(app, WebhookDelivery):
        counts[delivery.endpoint_id] += 1
    assert counts[second.id] == 3 and 5 <= counts[first.id] <= 10
    # No limit: every rejected delivery is kept.
    unlimited = app_factory(
        STRIPE_HOOKS_MAX_REJECTED_PER_MINUTE=None, STRIPE_HOOKS_MAX_REJECTED_BYTES_PER_MINUTE=None
    )
    assert unlimited.extensions["stripe_hooks"].rejected_limit is None
    third = endpoint_of(unlimited)
    assert flood(unlimited, third, 20) == {400}
    assert sum(d.endpoint_id == third.id for d in rows(unlimited, WebhookDelivery)) == 20


# -- what is kept --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["always", "failed", "never"])
def test_store_body_modes(app_factory, endpoint_of, hooks, mode):
    app = app_factory(STRIPE_HOOKS_STORE_BODY=mode)
    endpoint = endpoint_of(app)
    client = app.test_client()

    @hooks.on("invoice")
    def fails(event, **kwargs):
        raise ValueError("no")

    good = build_event("customer.created", {"email": "a@example.com", "name": "Ann"})
    failing = build_event("invoice.paid", {"customer": "cus_1"})
    assert deliver(client, endpoint, good).status_code == 200
    assert deliver(client, endpoint, good).status_code == 200  # a duplicate
    assert deliver(client, endpoint, failing).status_code == 500
    assert deliver(client, endpoint, good, secret="whsec_wrong").status_code == 400
    by_outcome = {d.outcome: d for d in rows(app, WebhookDelivery)}
    kept = {outcome: d.body != b"" for outcome, d in by_outcome.items()}
    expected = {
        "always": {"processed": True, "duplicate": True, "failed": True, "rejected": True},
        "failed": {"processed": False, "duplicate": False, "failed": True, "rejected": True},
        "never": {"processed": False, "duplicate": False, "failed": False, "rejected": False},
    }[mode]
    assert kept == expected
    events = {e.id: e for e in rows(app, StripeEvent)}
    assert events[good["id"]].data == good["data"]
    assert events[failing["id"]].data == failing["data"]


def test_bad_store_body_is_refused(tmp_path, hooks):
    with pytest.raises(RuntimeError, match="STRIPE_HOOKS_STORE_BODY.*'sometimes'"):
        make_app(f"sqlite:///{tmp_path / 'x.db'}", hooks, STRIPE_HOOKS_STORE_BODY="sometimes")


def test_store_body_follows_redaction(tmp_path):
    """Unset, STORE_BODY keeps every body, or only failed ones while REDACT is set (a
    processed body holds what the redaction removes); "always" with REDACT is refused."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert make_app(url, StripeHooks()).extensions["stripe_hooks"].keep_body is None
    redacting = make_app(url, StripeHooks(), STRIPE_HOOKS_REDACT=strip_personal)
    assert redacting.extensions["stripe_hooks"].keep_body == guard.STORE_BODY["failed"]
    with pytest.raises(RuntimeError, match='STORE_BODY = "always" keeps every raw body'):
        make_app(
            url, StripeHooks(), STRIPE_HOOKS_REDACT=strip_personal, STRIPE_HOOKS_STORE_BODY="always"
        )


def strip_personal(data):
    obj = data["object"]
    for key in ("email", "name", "address"):
        obj.pop(key, None)
    return data


def test_redaction_is_stored_and_handlers_see_everything(app_factory, endpoint_of, hooks):
    app = app_factory(STRIPE_HOOKS_REDACT=strip_personal, STRIPE_HOOKS_EVENT_CALLBACK=None)
    endpoint = endpoint_of(app)
    seen = []

    @hooks.on("customer")
    def keep(event, **kwargs):
        seen.append(dict(event.data["object"]))
        record(app, event.id, event.data["object"].get("email", "-"))

    event = build_event(
        "customer.created", {"email": "a@example.com", "name": "Ann", "address": {"city": "X"}}
    )
    assert deliver(app.test_client(), endpoint, event).status_code == 200
    assert seen[0]["email"] == "a@example.com" and seen[0]["address"] == {"city": "X"}
    (stored,) = rows(app, StripeEvent)
    assert stored.data["object"]["id"] == event["data"]["object"]["id"]
    assert {"email", "name", "address"}.isdisjoint(stored.data["object"])
    (delivery,) = rows(app, WebhookDelivery)
    assert delivery.body == b""  # the raw body holds what was removed
    # Re-processing sees what is stored.
    result = app.test_cli_runner().invoke(args=["stripe-hooks", "reprocess", event["id"]])
    assert result.exit_code == 0, result.output
    assert "email" not in seen[1]
    assert handled(app) == [(event["id"], "a@example.com"), (event["id"], "-")]


def test_redaction_in_queue_mode_and_on_failure(app_factory, endpoint_of, hooks):
    queued = []
    app = app_factory(
        STRIPE_HOOKS_REDACT="test_guard.strip_personal", STRIPE_HOOKS_EVENT_CALLBACK=queued.append
    )
    endpoint = endpoint_of(app)
    event = build_event("customer.created", {"email": "a@example.com"})
    assert deliver(app.test_client(), endpoint, event).status_code == 200
    assert queued == [event["id"]]
    (stored,) = rows(app, StripeEvent)
    assert stored.status == "pending" and "email" not in stored.data["object"]
    (delivery,) = rows(app, WebhookDelivery)
    assert delivery.body == b""

    @hooks.on("invoice")
    def broken(event, **kwargs):
        raise RuntimeError("down")

    failing = app_factory(STRIPE_HOOKS_REDACT=strip_personal, STRIPE_HOOKS_EVENT_CALLBACK=None)
    invoice = build_event("invoice.paid", {"email": "a@example.com", "name": "A"})
    assert deliver(failing.test_client(), endpoint, invoice).status_code == 500
    (failed,) = [e for e in rows(failing, StripeEvent) if e.id == invoice["id"]]
    assert failed.status == "failed"
    assert {"email", "name"}.isdisjoint(failed.data["object"])


def test_authorization_and_cookie_are_never_stored(app, client, endpoint):
    headers = {"Authorization": "Bearer sk_test_secret", "Cookie": "session=abc", "X-Other": "1"}
    response = deliver(client, endpoint, build_event("customer.created"), headers=headers)
    assert response.status_code == 200
    assert deliver(client, endpoint, "{}", secret="whsec_x", headers=headers).status_code == 400
    for delivery in rows(app, WebhookDelivery):
        assert "Stripe-Signature" in delivery.headers
        assert {k.lower() for k in delivery.headers}.isdisjoint({"authorization", "cookie"})
        assert "X-Other" not in delivery.headers


# -- erasing one customer ---------------------------------------------------------------------


def test_erase_customer(app, client, endpoint, runner):
    mine = build_event("customer.created", {"id": "cus_A", "email": "a@example.com"})
    paid = build_event("invoice.paid", {"customer": "cus_A"})
    other = build_event("customer.created", {"id": "cus_B"})
    other_invoice = build_event("invoice.paid", {"customer": "cus_B"})
    for event in (mine, paid, other, other_invoice):
        assert deliver(client, endpoint, event).status_code == 200
    assert deliver(client, endpoint, paid).status_code == 200  # two deliveries of one event
    result = runner.invoke(args=["stripe-hooks", "erase", "--customer", "cus_A", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Would delete 2 event(s) and 3 delivery(ies) of cus_A." in result.output
    assert len(rows(app, StripeEvent)) == 4
    result = runner.invoke(args=["stripe-hooks", "erase", "--customer", "cus_A"])
    assert "Deleted 2 event(s) and 3 delivery(ies) of cus_A." in result.output
    assert {e.id for e in rows(app, StripeEvent)} == {other["id"], other_invoice["id"]}
    assert {d.event_id for d in rows(app, WebhookDelivery)} == {other["id"], other_invoice["id"]}
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        tracked = db.session.execute(sa.text("SELECT id FROM stripe_hooks_object")).scalars()
        assert "cus_A" not in set(tracked)
    result = runner.invoke(args=["stripe-hooks", "erase", "--customer", " "])
    assert result.exit_code == 2 and "cus_" in result.output
