"""The admin blueprint through Flask's test client: guard, pages, forms, CSRF, process again."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
import stripe
from flask import redirect
from flask_stripe_hooks.extension import get_state
from flask_stripe_hooks.models import StripeEvent, WebhookEndpoint, event_table
from flask_stripe_hooks.stripe_api import translate
from flask_stripe_hooks.testing import (
    FakeStripe,
    build_event,
    create_endpoint,
    deliver,
    sign_payload,
)
from flask_stripe_hooks.utils import utcnow

from support.admin_support import ADMIN, allow, basic_auth
from support.admin_support import page_text as text
from support.helpers import handled, record, rows

PAGES = ["/", "/endpoints/new", "/events/", "/deliveries/"]


@pytest.fixture
def app(app_factory: Any, stub: FakeStripe) -> Any:
    return app_factory(
        STRIPE_HOOKS_ADMIN_AUTH=allow,
        STRIPE_HOOKS_API_BASE=stub.url,
        STRIPE_TEST_SECRET_KEY="sk_test_stub",
        STRIPE_LIVE_SECRET_KEY="sk_live_stub",
    )


def csrf_token(client: Any, path: str) -> str:
    """The CSRF token of the form on ``path``, as a browser would read it."""
    page = client.get(ADMIN + path)
    assert page.status_code == 200, page.get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text)
    assert match, "no CSRF token on " + path
    return match.group(1)


def field_errors(response: Any, field: str) -> str:
    """The error text shown under one form field (``<ul id="FIELD-error">``)."""
    match = re.search(rf'<ul class="errors" id="{field}-error">(.*?)</ul>', response.text, re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", match.group(1))).strip() if match else ""


# -- the guard --------------------------------------------------------------------------


def test_without_auth_setting_every_page_is_403_and_says_how(app_factory, endpoint):
    app = app_factory()  # no STRIPE_HOOKS_ADMIN_AUTH
    client = app.test_client()
    for path in [*PAGES, f"/endpoints/{endpoint.uuid}", f"/endpoints/{endpoint.uuid}/delete"]:
        response = client.get(ADMIN + path)
        assert response.status_code == 403, path
        assert "STRIPE_HOOKS_ADMIN_AUTH" in text(response)
    response = client.post(f"{ADMIN}/endpoints/{endpoint.uuid}/status", data={"disable": "1"})
    assert response.status_code == 403
    (stored,) = rows(app, WebhookEndpoint)
    assert stored.status == "enabled"
    # The stylesheet is not a secret: the 403 page itself uses it.
    with client.get(ADMIN + "/_static/stripe_hooks/admin.css") as css:
        assert css.status_code == 200 and css.mimetype == "text/css"


def test_pages_cannot_be_framed_or_cached(client):
    for response in (client.get(ADMIN + "/"), client.get(ADMIN + "/events/evt_none")):
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"


def test_auth_callable_can_refuse_or_answer_itself(app_factory):
    client = app_factory(STRIPE_HOOKS_ADMIN_AUTH=basic_auth).test_client()
    assert client.get(ADMIN + "/").status_code == 401
    assert client.get(ADMIN + "/", auth=("admin", "wrong")).status_code == 401
    assert client.get(ADMIN + "/", auth=("admin", "pw")).status_code == 200

    client = app_factory(STRIPE_HOOKS_ADMIN_AUTH=lambda: redirect("/login")).test_client()
    response = client.get(ADMIN + "/events/")
    assert response.status_code == 302 and response.location == "/login"

    for answer in ("", 1, None):  # only True or a user name lets a request in
        client = app_factory(STRIPE_HOOKS_ADMIN_AUTH=lambda a=answer: a).test_client()
        response = client.get(ADMIN + "/")
        assert response.status_code == 403
        assert "not allowed" in text(response)


def test_auth_by_dotted_path_prefix_and_switch(app_factory):
    app = app_factory(
        STRIPE_HOOKS_ADMIN_AUTH="test_admin.allow", STRIPE_HOOKS_ADMIN_URL_PREFIX="/ops/stripe/"
    )
    client = app.test_client()
    assert client.get("/ops/stripe/").status_code == 200
    assert client.get(ADMIN + "/").status_code == 404
    app = app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow, STRIPE_HOOKS_ADMIN_URL_PREFIX=None)
    assert app.test_client().get(ADMIN + "/").status_code == 404
    with pytest.raises(RuntimeError, match="STRIPE_HOOKS_ADMIN_AUTH: cannot import"):
        app_factory(STRIPE_HOOKS_ADMIN_AUTH="no_such_module.allow")


def test_links_back_to_the_app_and_to_log_out(app_factory, tmp_path):
    """An app adds links to the admin's header by overriding base.html's app_links block."""
    plain = app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow)
    linked = app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow)
    folder = tmp_path / "templates" / "stripe_hooks" / "admin"
    folder.mkdir(parents=True)
    (folder / "base.html").write_text(
        '{% extends "stripe_hooks/admin/_base.html" %}{% block app_links %}'
        '<a href="{{ url_for(\'stripe_hooks_admin.event_list\') }}" id="home-link">Home</a>'
        '<a href="https://sso.example.com/logout?app=shop" id="logout-link">Log out</a>'
        "{% endblock %}"
    )
    linked.template_folder = str(tmp_path / "templates")
    page = linked.test_client().get(ADMIN + "/deliveries/").text
    assert f'<a href="{ADMIN}/events/" id="home-link">' in page
    assert 'href="https://sso.example.com/logout?app=shop" id="logout-link">Log out' in page
    assert "Deliveries" in page  # the page itself is the admin's
    page = plain.test_client().get(ADMIN + "/deliveries/").text
    assert "home-link" not in page and "logout-link" not in page


# -- pages ------------------------------------------------------------------------------


@pytest.fixture
def history(app, hooks, client, endpoint):
    """One processed event, one failed (the handler raised), one rejected delivery."""

    @hooks.on("invoice")
    def fail(event, **kwargs):
        record(app, event.id, "invoice")
        if event.data["object"].get("fail"):
            raise RuntimeError("the invoice handler broke")

    ok = build_event("customer.created", {"email": "<script>alert(1)</script>@example.com"})
    bad = build_event("invoice.paid", {"fail": True})
    assert deliver(client, endpoint, ok).status_code == 200
    assert deliver(client, endpoint, bad).status_code == 500
    body, header = sign_payload(build_event("customer.updated"), "whsec_wrong_secret_value")
    rejected = client.post(
        f"/stripe/webhook/{endpoint.uuid}/", data=body, headers={"Stripe-Signature": header}
    )
    assert rejected.status_code == 400
    return ok, bad


def test_endpoints_list(client, endpoint, history, secret):
    response = client.get(ADMIN + "/")
    assert response.status_code == 200
    row = re.search(rf'<tr data-uuid="{endpoint.uuid}">.*?</tr>', response.text, re.S)
    assert row, response.text
    cells = [
        html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<wbr>|</?span[^>]*>", "", c))).split()
        for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
    ]
    assert cells[0] == ["test"]  # mode
    assert cells[1] == ["default"]  # account
    assert cells[2] == [f"http://localhost/stripe/webhook/{endpoint.uuid}/"]
    assert cells[3] == ["enabled"]
    assert cells[4] == ["every", "event"]
    assert cells[5][0] == utcnow().strftime("%Y-%m-%d")  # last delivery
    assert cells[6] == ["2"]  # the failed and the rejected delivery of the last 24 h
    assert secret not in response.text


def test_endpoint_detail_masks_secrets(client, endpoint, history, secret):
    response = client.get(f"{ADMIN}/endpoints/{endpoint.uuid}")
    assert response.status_code == 200
    page = text(response)
    assert secret not in response.text and secret[6:20] not in response.text
    assert "whsec_•••••••• current" in page
    assert "the invoice handler broke" in page  # the recent deliveries
    assert client.get(f"{ADMIN}/endpoints/00000000-0000-0000-0000-000000000000").status_code == 404


def test_events_list_filters(client, history):
    ok, bad = history
    assert ok["id"] in text(client.get(ADMIN + "/events/"))
    assert bad["id"] in text(client.get(ADMIN + "/events/"))

    def shown(query: str) -> set[str]:
        response = client.get(ADMIN + "/events/?" + query)
        assert response.status_code == 200
        return set(re.findall(r"evt_[0-9a-f]{24}", response.text))

    assert shown("type=customer") == {ok["id"]}
    assert shown("type=customer.*") == {ok["id"]}
    assert shown("type=cust") == set()  # whole segments only
    assert shown("type=invoice.paid") == {bad["id"]}
    assert shown("status=failed") == {bad["id"]}
    assert shown("status=processed&type=invoice") == set()
    assert shown("mode=live") == set()
    assert shown("mode=test") == {ok["id"], bad["id"]}
    response = client.get(ADMIN + "/events/?status=bogus")
    assert response.status_code == 400
    assert "Not a valid choice" in field_errors(response, "status")
    assert "No events match these filters." in text(client.get(ADMIN + "/events/?mode=live"))


def test_empty_lists_say_nothing_came_yet(client):
    assert "No endpoints yet." in text(client.get(ADMIN + "/"))
    assert "No events yet." in text(client.get(ADMIN + "/events/"))
    assert "No deliveries yet." in text(client.get(ADMIN + "/deliveries/"))
    shown = text(client.get(ADMIN + "/deliveries/?outcome=failed"))
    assert "No deliveries match these filters." in shown and "yet" not in shown


def test_events_list_paginates(app, db, client):
    now = utcnow()
    with app.app_context():
        db.session.execute(
            event_table.insert(),
            [
                {
                    "id": f"evt_{i:04d}",
                    "type": "charge.succeeded",
                    "livemode": False,
                    "data": {"object": {}},
                    "status": "processed",
                    "received_at": now - timedelta(seconds=i),
                }
                for i in range(120)
            ],
        )
        db.session.commit()
    first = client.get(ADMIN + "/events/?type=charge")
    ids = re.findall(r">(evt_\d{4})<", first.text)
    assert ids == [f"evt_{i:04d}" for i in range(50)]  # newest first
    assert "120 in all" in text(first)
    older = re.search(r'href="([^"]+)" rel="next">Older', first.text)
    assert older and "type=charge" in older.group(1)
    second = client.get(html.unescape(older.group(1)))
    older = re.search(r'href="([^"]+)" rel="next">Older', second.text)
    assert older
    last = client.get(html.unescape(older.group(1)))
    assert re.findall(r">(evt_\d{4})<", last.text) == [f"evt_{i:04d}" for i in range(100, 120)]
    assert 'rel="next"' not in last.text


def test_event_detail_escapes_the_payload(client, history):
    ok, bad = history
    response = client.get(f"{ADMIN}/events/{ok['id']}")
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;@example.com" in response.text
    pre = re.search(r'<pre class="json" id="payload">(.*?)</pre>', response.text, re.S)
    assert pre and '\n  "type": "customer.created"' in html.unescape(pre.group(1))
    failed = text(client.get(f"{ADMIN}/events/{bad['id']}"))
    assert "RuntimeError: the invoice handler broke" in failed
    assert "traceback" in failed
    assert client.get(f"{ADMIN}/events/evt_nope").status_code == 404


def test_deliveries_list_filters(client, endpoint, history):
    def outcomes(query: str) -> list[str]:
        response = client.get(ADMIN + "/deliveries/?" + query)
        assert response.status_code == 200
        return re.findall(r'<span class="badge (\w+)">', response.text)

    assert sorted(outcomes("")) == ["failed", "processed", "rejected"]
    assert outcomes("outcome=rejected") == ["rejected"]
    assert outcomes("outcome=failed") == ["failed"]
    assert sorted(outcomes(f"endpoint_uuid={endpoint.uuid}")) == [
        "failed",
        "processed",
        "rejected",
    ]
    assert outcomes("endpoint_uuid=00000000-0000-0000-0000-000000000000") == []
    assert "signature does not match" in text(client.get(ADMIN + "/deliveries/?outcome=rejected"))
    response = client.get(ADMIN + "/deliveries/?endpoint_uuid=nope")
    assert response.status_code == 400
    assert field_errors(response, "endpoint_uuid") == "Not an endpoint uuid."


def test_app_can_override_a_template(app_factory, tmp_path):
    folder = tmp_path / "templates" / "stripe_hooks" / "admin"
    folder.mkdir(parents=True)
    (folder / "events.html").write_text("our own events page: {{ page.total }}")
    app = app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow)
    app.template_folder = str(tmp_path / "templates")
    assert app.test_client().get(ADMIN + "/events/").text == "our own events page: 0"


# -- CSRF and process again ------------------------------------------------------------


@pytest.mark.parametrize("csrf_setting", [{}, {"WTF_CSRF_ENABLED": False}])
def test_post_without_csrf_token_is_refused(app_factory, hooks, csrf_setting):
    app = app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow, **csrf_setting)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    client = app.test_client()
    path = f"{ADMIN}/endpoints/{endpoint.uuid}/status"
    response = client.post(path, data={"disable": "1", "csrf_token": "forged"})
    assert response.status_code == 400
    assert "The CSRF session token is missing" in text(response)  # never saw a form
    csrf_token(client, f"/endpoints/{endpoint.uuid}")  # the page was seen: a session exists
    for data, reason in [
        ({"disable": "1"}, "The CSRF token is missing"),
        ({"disable": "1", "csrf_token": "forged"}, "The CSRF token is invalid"),
    ]:
        response = client.post(path, data=data)
        assert response.status_code == 400
        assert reason in text(response)
    (stored,) = rows(app, WebhookEndpoint)
    assert stored.status == "enabled"


def test_csrf_protect_of_the_app_guards_the_admin_too(app_factory):
    from flask_wtf.csrf import CSRFProtect

    app = app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow)
    CSRFProtect(app)
    client = app.test_client()
    response = client.post(f"{ADMIN}/events/evt_x/process")
    assert response.status_code == 400
    token = csrf_token(client, "/endpoints/new")
    response = client.post(f"{ADMIN}/events/evt_x/process", data={"csrf_token": token})
    assert response.status_code == 404  # got through CSRF; there is no such event


def test_process_again(app, client, hooks, history):
    ok, bad = history
    token = csrf_token(client, f"/events/{bad['id']}")

    response = client.post(f"{ADMIN}/events/{bad['id']}/process")
    assert response.status_code == 400  # no token
    assert handled(app) == []

    # Still failing: the flash says so and the event stays failed.
    response = client.post(
        f"{ADMIN}/events/{bad['id']}/process", data={"csrf_token": token}, follow_redirects=True
    )
    assert response.status_code == 200
    assert f"Event {bad['id']} failed again (handler failed)" in text(response)
    # A stored event's run has no delivery: its error and traceback are on the event page.
    failure = re.search(r'<section id="last-failure".*?</section>', response.text, re.S)
    assert failure, text(response)
    shown = html.unescape(failure.group(0))
    assert "Attempt 2 failed" in shown
    assert "RuntimeError: the invoice handler broke" in shown
    assert "Traceback (most recent call last)" in shown and ", in fail" in shown

    # The bug is fixed (the handler no longer raises): processing again succeeds.
    with app.app_context():
        db = app.extensions["sqlalchemy"]
        db.session.execute(
            event_table.update()
            .where(event_table.c.id == bad["id"])
            .values(data={"object": {"id": "in_1", "object": "invoice"}})
        )
        db.session.commit()
    response = client.post(
        f"{ADMIN}/events/{bad['id']}/process", data={"csrf_token": token}, follow_redirects=True
    )
    assert f"Event {bad['id']} processed again: processed." in text(response)
    assert 'id="last-failure"' not in response.text
    assert handled(app) == [(bad["id"], "invoice")]
    (event,) = rows(app, StripeEvent, StripeEvent.id == bad["id"])
    assert event.status == "processed" and event.attempts == 3

    # An event processed already runs again: that is what the button is for.
    client.post(f"{ADMIN}/events/{bad['id']}/process", data={"csrf_token": token})
    assert handled(app) == [(bad["id"], "invoice")] * 2
    response = client.post(f"{ADMIN}/events/evt_missing/process", data={"csrf_token": token})
    assert response.status_code == 404


# -- endpoint forms, against the local Stripe API ----------------------------------------


def new_endpoint_form(client: Any, **fields: Any) -> dict[str, Any]:
    data = {
        "csrf_token": csrf_token(client, "/endpoints/new"),
        "account": "",
        "mode": "test",
        "base_url": "https://shop.example.com",
        "events": ["customer.created", "invoice.paid"],
        "api_version": "",
        "description": "Main shop",
        "metadata": "team=billing\r\nenv=prod",
    }
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def test_add_endpoint_form(app, client, stub):
    page = client.get(ADMIN + "/endpoints/new")
    assert '<input id="base_url" name="base_url" type="url" value="http://localhost">' in page.text
    assert "Stripe cannot reach localhost" in text(page)  # the prefilled URL warns
    options = re.findall(r'<option (?:selected )?value="([^"]+)"', page.text)
    assert options[0] == "*" and "customer.subscription.trial_will_end" in options
    assert len(options) > 200  # stripe-python's own list
    assert 'data-picker="event-types"' in page.text  # admin.js makes it a searchable list

    response = client.post(ADMIN + "/endpoints/new", data=new_endpoint_form(client))
    assert response.status_code == 302, text(response)
    (endpoint,) = rows(app, WebhookEndpoint)
    assert response.location == f"{ADMIN}/endpoints/{endpoint.uuid}"
    (call,) = stub.calls("POST")
    assert call.path == "/v1/webhook_endpoints" and call.api_key == "sk_test_stub"
    assert call.form["url"] == f"https://shop.example.com/stripe/webhook/{endpoint.uuid}/"
    assert call.form["enabled_events"] == ["customer.created", "invoice.paid"]
    assert call.form["description"] == "Main shop"
    assert call.form["metadata"] == {
        "team": "billing",
        "env": "prod",
        "flask_stripe_hooks_uuid": str(endpoint.uuid),
    }
    assert "connect" not in call.form
    assert endpoint.stripe_id in stub.endpoints and not endpoint.livemode
    assert endpoint.secrets == [{"secret": stub.secrets[endpoint.stripe_id], "expires_at": None}]
    assert endpoint.enabled_events == ["customer.created", "invoice.paid"]

    detail = client.get(response.location)
    created = f"Created test-mode endpoint {endpoint.uuid} ({endpoint.stripe_id} on Stripe)"
    assert created in text(detail)  # the uuid, as the CLI says it
    assert stub.secrets[endpoint.stripe_id] not in detail.text
    listing = client.get(ADMIN + "/")
    assert call.form["url"] in text(listing)
    assert stub.secrets[endpoint.stripe_id] not in listing.text


def test_add_live_connect_endpoint_with_every_event(app, client, stub):
    form = new_endpoint_form(
        client, mode="live", events="*", connect="y", api_version="2024-06-20", metadata=""
    )
    assert client.post(ADMIN + "/endpoints/new", data=form).status_code == 302
    (call,) = stub.calls("POST")
    assert call.api_key == "sk_live_stub"
    assert call.form["enabled_events"] == ["*"]
    assert call.form["connect"] == "true" and call.form["api_version"] == "2024-06-20"
    (endpoint,) = rows(app, WebhookEndpoint)
    assert endpoint.livemode and endpoint.connect and endpoint.enabled_events == ["*"]


@pytest.mark.parametrize(
    ("fields", "field", "message", "calls_stripe"),
    [
        ({"base_url": "http://localhost:5000"}, "base_url", "flask stripe-hooks listen", False),
        ({"base_url": "http://10.0.0.7"}, "base_url", "not a public address", False),
        ({"base_url": ""}, "base_url", "Enter the public base URL", False),
        ({"base_url": "https://shop.invalid"}, "base_url", "URL must be publicly accessible", True),
        ({"mode": "live", "base_url": "http://shop.example.com"}, "base_url", "https://", False),
        ({"events": "customer.nope"}, "events", "'customer.nope' is not a Stripe event", False),
        ({"events": None}, "events", "Choose at least one event type", False),
        ({"metadata": "just text"}, "metadata", "Line 1: write KEY=VALUE.", False),
        ({"metadata": "k" * 41 + "=v"}, "metadata", "1 to 40 characters", False),
        ({"api_version": "yesterday"}, "api_version", "not a Stripe API version", False),
        ({"mode": "sandbox"}, "mode", "Not a valid choice", False),
        ({"account": "eu"}, "account", "Not a valid choice", False),
    ],
)
def test_add_endpoint_errors_are_shown_on_their_field(
    app, client, stub, fields, field, message, calls_stripe
):
    response = client.post(ADMIN + "/endpoints/new", data=new_endpoint_form(client, **fields))
    assert response.status_code == 400
    assert message in field_errors(response, field), text(response)
    assert bool(stub.calls()) is calls_stripe
    assert rows(app, WebhookEndpoint) == []


def test_an_error_is_shown_once(client, stub):
    response = client.post(
        ADMIN + "/endpoints/new", data=new_endpoint_form(client, base_url="http://localhost:5000")
    )
    assert response.status_code == 400
    assert text(response).count("Stripe cannot reach localhost") == 1
    assert "Stripe cannot reach localhost" in field_errors(response, "base_url")


def test_a_404_from_the_api_names_the_call(app_factory, stub):
    # STRIPE_HOOKS_API_BASE points at a server that has no such API.
    app = app_factory(
        STRIPE_HOOKS_ADMIN_AUTH=allow,
        STRIPE_HOOKS_API_BASE=stub.url + "/not-stripe",
        STRIPE_TEST_SECRET_KEY="sk_test_stub",
    )
    client = app.test_client()
    response = client.post(ADMIN + "/endpoints/new", data=new_endpoint_form(client))
    assert response.status_code == 400
    shown = text(response)
    assert f"{stub.url}/not-stripe answered 404 Not Found to POST /v1/webhook_endpoints" in shown
    assert "STRIPE_HOOKS_API_BASE may point at a server without this API" in shown
    assert "internal error" not in shown
    assert rows(app, WebhookEndpoint) == []

    # A 404 whose body is not Stripe's (a web server's own page) says the same.
    not_stripe = stripe.APIError("Invalid response body from API: <h1>Not Found</h1>", None, 404)
    with app.app_context():
        error = translate(not_stripe, get_state(), call="GET /v1/webhook_endpoints")
    assert error.status == 404
    assert str(error).startswith(f"{stub.url}/not-stripe answered 404 Not Found to GET /v1/")
    # Stripe's own "no such endpoint" stays Stripe's message.
    missing = stripe.InvalidRequestError(
        "No such webhook endpoint: 'we_1'", "id", code="resource_missing", http_status=404
    )
    with app.app_context():
        assert str(translate(missing, get_state())) == "No such webhook endpoint: 'we_1' (id)"


def test_add_endpoint_errors_without_a_field_are_shown_above_the_form(
    app, client, stub, monkeypatch
):
    monkeypatch.setattr(stub, "keys", {"sk_live_stub"})  # the test key was revoked
    response = client.post(ADMIN + "/endpoints/new", data=new_endpoint_form(client))
    assert response.status_code == 400
    errors = re.search(r'<ul class="errors form-errors" role="alert">(.*?)</ul>', response.text)
    assert errors and "Stripe rejected the test secret key" in html.unescape(errors.group(1))
    assert "sk_test_stub" not in response.text
    assert rows(app, WebhookEndpoint) == []


@pytest.fixture
def remote(app, client, stub):
    """An endpoint made on Stripe through the form."""
    response = client.post(ADMIN + "/endpoints/new", data=new_endpoint_form(client))
    assert response.status_code == 302
    (endpoint,) = rows(app, WebhookEndpoint)
    stub.requests.clear()
    return endpoint


def test_disable_and_enable(app, client, stub, remote):
    path = f"/endpoints/{remote.uuid}"
    token = csrf_token(client, path)
    response = client.post(
        ADMIN + path + "/status", data={"csrf_token": token, "disable": "Disable"}
    )
    assert response.status_code == 302
    (call,) = stub.calls("POST")
    assert call.path == f"/v1/webhook_endpoints/{remote.stripe_id}"
    assert call.form == {"disabled": "true"}
    assert stub.endpoints[remote.stripe_id]["status"] == "disabled"
    (stored,) = rows(app, WebhookEndpoint)
    assert stored.status == "disabled"
    page = client.get(ADMIN + path)
    assert "Endpoint disabled." in text(page) and 'value="Enable"' in page.text

    client.post(ADMIN + path + "/status", data={"csrf_token": token, "enable": "Enable"})
    assert stub.calls("POST")[-1].form == {"disabled": "false"}
    (stored,) = rows(app, WebhookEndpoint)
    assert stored.status == "enabled"


def test_the_enabled_events_heading_labels_the_list(client, remote):
    page = client.get(f"{ADMIN}/endpoints/{remote.uuid}").text
    assert '<h2 id="enabled-events">Enabled events</h2>' in page
    assert '<label for="events"' not in page  # not the heading again as a label
    assert re.search(r'<select aria-labelledby="enabled-events"[^>]* id="events"', page)


def test_edit_events(app, client, stub, remote):
    path = f"/endpoints/{remote.uuid}"
    token = csrf_token(client, path)
    data = {"csrf_token": token, "events": ["charge.succeeded", "charge.failed"]}
    assert client.post(ADMIN + path + "/events", data=data).status_code == 302
    assert stub.calls("POST")[-1].form == {"enabled_events": ["charge.failed", "charge.succeeded"]}
    (stored,) = rows(app, WebhookEndpoint)
    assert stored.enabled_events == ["charge.failed", "charge.succeeded"]

    stub.fail_next(
        400,
        {
            "type": "invalid_request_error",
            "message": "Invalid enabled_events[0]: must be one of *, account.updated, ...",
            "param": "enabled_events[0]",
        },
    )
    response = client.post(ADMIN + path + "/events", data={"csrf_token": token, "events": "*"})
    assert response.status_code == 400
    assert "Invalid enabled_events[0]" in field_errors(response, "events")
    (stored,) = rows(app, WebhookEndpoint)
    assert stored.enabled_events == ["charge.failed", "charge.succeeded"]


def test_rotate_secret(app, client, stub, remote):
    old = remote.secrets[0]["secret"]
    path = f"/endpoints/{remote.uuid}"
    token = csrf_token(client, path)
    response = client.post(
        ADMIN + path + "/secret", data={"csrf_token": token, "secret": "nope", "keep_old_for": "1h"}
    )
    assert response.status_code == 400
    assert "starts with 'whsec_'" in field_errors(response, "secret")
    response = client.post(
        ADMIN + path + "/secret",
        data={"csrf_token": token, "secret": "whsec_" + "n" * 32, "keep_old_for": "soon"},
    )
    assert "is not a duration" in field_errors(response, "keep_old_for")
    assert "whsec_" + "n" * 32 not in response.text  # not even echoed back into the field
    (stored,) = rows(app, WebhookEndpoint)
    assert stored.secrets == remote.secrets

    response = client.post(
        ADMIN + path + "/secret",
        data={"csrf_token": token, "secret": "whsec_" + "n" * 32, "keep_old_for": "2h"},
        follow_redirects=True,
    )
    assert "Signing secret rotated." in text(response)
    (stored,) = rows(app, WebhookEndpoint)
    assert [s["secret"] for s in stored.secrets] == [old, "whsec_" + "n" * 32]
    expires = stored.secrets[0]["expires_at"]
    off = datetime.fromisoformat(expires) - utcnow() - timedelta(hours=2)
    assert abs(off.total_seconds()) < 60
    assert "valid until" in text(response) and "current" in text(response)
    assert old not in response.text and "n" * 32 not in response.text
    assert stub.calls() == []  # Stripe's API cannot roll secrets: nothing was sent


def test_delete_with_confirmation(app, client, stub, remote):
    path = f"/endpoints/{remote.uuid}/delete"
    page = client.get(ADMIN + path)
    assert "Delete this endpoint?" in text(page) and remote.url in text(page)
    token = csrf_token(client, path)

    stub.fail_next(500, {"type": "api_error", "message": "Something went wrong on our end."})
    response = client.post(ADMIN + path, data={"csrf_token": token})
    assert response.status_code == 400
    assert "Stripe had an internal error" in text(response)
    assert len(rows(app, WebhookEndpoint)) == 1

    response = client.post(ADMIN + path, data={"csrf_token": token})
    assert response.status_code == 302 and response.location == ADMIN + "/"
    assert stub.calls("DELETE")[-1].path == f"/v1/webhook_endpoints/{remote.stripe_id}"
    assert remote.stripe_id not in stub.endpoints
    assert rows(app, WebhookEndpoint) == []
    assert f"Endpoint {remote.uuid} deleted." in text(client.get(ADMIN + "/"))


def test_delete_keeping_the_remote_endpoint(app, client, stub, remote):
    path = f"/endpoints/{remote.uuid}/delete"
    data = {"csrf_token": csrf_token(client, path), "keep_remote": "y"}
    assert client.post(ADMIN + path, data=data).status_code == 302
    assert stub.calls("DELETE") == [] and remote.stripe_id in stub.endpoints
    assert rows(app, WebhookEndpoint) == []
