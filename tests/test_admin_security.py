"""Admin security: every route of the admin blueprint, found in ``app.url_map``, refuses
an anonymous request; every route that takes a POST refuses a missing or wrong CSRF token;
markup in event data is shown as text in a real browser (Chromium driven by Playwright):
no dialog opens, no script runs, with and without the admin's Content-Security-Policy.

Also here: the secret-leak guard of conftest.py catches what it must, and the remote
address rules (``request.remote_addr`` is stored; ``X-Forwarded-For`` only counts behind
Werkzeug's ``ProxyFix``).
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import click
import pytest
import sqlalchemy as sa
from flask import Flask, Response, url_for
from flask_stripe_hooks.models import WebhookDelivery
from flask_stripe_hooks.testing import (
    FakeStripe,
    build_event,
    create_endpoint,
    deliver,
    sign_payload,
)
from itsdangerous import URLSafeTimedSerializer
from werkzeug.middleware.proxy_fix import ProxyFix

from support.admin_support import ADMIN, allow, basic_auth, follow, launch_chromium
from support.helpers import FIGURES, count, on_sqlite, record, rows, serve_wsgi


def make(app_factory: Any, stub: FakeStripe, **config: Any) -> Flask:
    return app_factory(  # type: ignore[no-any-return]
        STRIPE_HOOKS_API_BASE=stub.url, STRIPE_TEST_SECRET_KEY="sk_test_stub", **config
    )


def seed(app: Flask, stub: FakeStripe) -> dict[str, str]:
    """An endpoint that exists on Stripe and one processed event: what routes act on."""
    remote = stub.add_endpoint()
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"], stripe_id=remote["id"])
    event = build_event("customer.created")
    assert deliver(app.test_client(), endpoint, event).status_code == 200
    return {"endpoint_uuid": str(endpoint.uuid), "event_id": event["id"]}


def admin_routes(app: Flask, values: dict[str, str]) -> list[tuple[str, str, str]]:
    """``(endpoint, method, url)`` for every rule of the admin blueprint in the URL map."""
    out = []
    values = {**values, "filename": "stripe_hooks/admin.css"}
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if not rule.endpoint.startswith("stripe_hooks_admin."):
                continue
            url = url_for(rule.endpoint, **{name: values[name] for name in rule.arguments})
            out += [(rule.endpoint, method, url) for method in sorted(rule.methods or ())]
    return out


def snapshot(app: Flask) -> list[Any]:
    """Every row of the extension's tables, to compare before and after."""
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        return [
            [tuple(map(str, row)) for row in db.session.execute(sa.text(f"SELECT * FROM {t}"))]
            for t in ("stripe_hooks_endpoint", "stripe_hooks_event", "stripe_hooks_delivery")
        ]


# What each POST would do if it got through: enough to change something.
ACTION_FORMS: dict[str, dict[str, str]] = {
    "endpoint_create": {"base_url": "https://shop.example", "events": "*", "mode": "test"},
    "endpoint_status": {"disable": "1"},
    "endpoint_events": {"events": "customer.created"},
    "endpoint_secret": {"secret": "whsec_" + "A" * 32, "keep_old_for": "0"},
    "endpoint_delete": {"confirm": "y"},
    "event_process": {},
}


def action(endpoint: str) -> dict[str, str]:
    return ACTION_FORMS.get(endpoint.split(".", 1)[1], {})


def page_text(response: Any) -> str:
    body = re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))
    return " ".join(html.unescape(body).split())


# -- anonymous ------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["not configured", "basic auth"])
def test_every_admin_route_refuses_anonymous_requests(app_factory, stub, auth: str):
    app = make(
        app_factory, stub, STRIPE_HOOKS_ADMIN_AUTH=basic_auth if auth != "not configured" else None
    )
    values = seed(app, stub)
    routes = admin_routes(app, values)
    before, stripe_calls = snapshot(app), len(stub.requests)
    client = app.test_client()
    credentials: list[Any] = [None]
    if auth == "basic auth":
        credentials += [("admin", "wrong"), ("", ""), ("admin", "")]
    checked = set()
    for endpoint, method, url in routes:
        if endpoint == "stripe_hooks_admin.static":
            continue  # public on purpose: the stylesheet of the 403 page (checked below)
        for creds in credentials:
            response = client.open(url, method=method, auth=creds, data=action(endpoint))
            assert response.status_code in (401, 403), (method, url, creds, response.status_code)
            body = response.get_data(as_text=True)
            assert values["event_id"] not in body and values["endpoint_uuid"] not in body
        checked.add((endpoint, method))
    # The enumeration found the admin: its pages and every form.
    names = {e.split(".", 1)[1] for e, _ in checked}
    assert {"endpoint_list", "event_list", "delivery_list", "event_detail"} <= names
    assert set(ACTION_FORMS) <= names
    assert snapshot(app) == before and len(stub.requests) == stripe_calls
    count("admin anonymous requests refused", len(checked) * len(credentials))
    rules = {e for e, _ in checked}
    FIGURES["admin routes found in url_map"] = max(
        FIGURES["admin routes found in url_map"], len(rules)
    )
    FIGURES["admin route x method pairs checked"] = max(
        FIGURES["admin route x method pairs checked"], len(checked)
    )


def test_admin_static_files_are_only_the_static_files(app_factory, stub):
    client = make(app_factory, stub).test_client()  # no auth at all
    for name in ("admin.css", "admin.js"):
        with client.get(f"{ADMIN}/_static/stripe_hooks/{name}") as response:
            assert response.status_code == 200
    for path in (
        "/_static/../admin.py",
        "/_static/stripe_hooks/../../admin.py",
        "/_static/%2e%2e/%2e%2e/models.py",
        "/_static/..%2f..%2fmodels.py",
        "/_static/../templates/stripe_hooks/admin/base.html",
    ):
        response = client.get(ADMIN + path)
        assert response.status_code == 404, path


# -- CSRF -----------------------------------------------------------------------------

TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def token_of(client: Any, path: str) -> str:
    page = client.get(ADMIN + path)
    match = TOKEN.search(page.get_data(as_text=True))
    assert match, path
    return match.group(1)


def refused_for_csrf(response: Any) -> bool:
    return response.status_code == 400 and "CSRF" in page_text(response)


@pytest.mark.parametrize("setting", [{}, {"WTF_CSRF_ENABLED": False}], ids=["default", "off"])
def test_every_admin_post_refuses_a_missing_or_wrong_csrf_token(
    app_factory, stub, setting: dict[str, Any]
):
    app = make(app_factory, stub, STRIPE_HOOKS_ADMIN_AUTH=allow, **setting)
    values = seed(app, stub)
    posts = [(e, url) for e, method, url in admin_routes(app, values) if method == "POST"]
    client, other = app.test_client(), app.test_client()
    good = token_of(client, f"/endpoints/{values['endpoint_uuid']}")
    with client.session_transaction() as session:
        raw = session["csrf_token"]
    signer = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="wtf-csrf-token")
    with mock.patch("time.time", return_value=time.time() - 7200):
        expired = signer.dumps(raw)  # older than WTF_CSRF_TIME_LIMIT (an hour)
    wrong: dict[str, dict[str, str] | None] = {
        "missing": None,
        "empty": {"csrf_token": ""},
        "garbage": {"csrf_token": "forged"},
        "tampered": {"csrf_token": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")},
        "another session's": {"csrf_token": token_of(other, "/endpoints/new")},
        "another app's key": {
            "csrf_token": URLSafeTimedSerializer("other-key", salt="wtf-csrf-token").dumps(raw)
        },
        "expired": {"csrf_token": expired},
        "in a wrong header": {},
    }
    before, stripe_calls = snapshot(app), len(stub.requests)
    for endpoint, url in posts:
        for name, token in wrong.items():
            headers = {"X-CSRFToken": "forged"} if name == "in a wrong header" else {}
            response = client.post(url, data={**action(endpoint), **(token or {})}, headers=headers)
            assert refused_for_csrf(response), (url, name, response.status_code)
        count("admin POSTs refused for a bad CSRF token", len(wrong))
    FIGURES["admin POST routes checked for CSRF"] = max(
        FIGURES["admin POST routes checked for CSRF"], len(posts)
    )
    FIGURES["bad CSRF token kinds"] = len(wrong)
    assert snapshot(app) == before and len(stub.requests) == stripe_calls
    assert len(posts) >= len(ACTION_FORMS)
    # The control: the same posts with the page's own token get past the check.
    for endpoint, url in sorted(posts, key=lambda p: p[0].endswith("endpoint_delete")):
        response = client.post(url, data={**action(endpoint), "csrf_token": good})
        assert not refused_for_csrf(response), (url, page_text(response)[:300])


# -- markup in a real browser ------------------------------------------------------------

# Each payload would bump window.__xss and open a dialog if it ever ran.
RUN = "window.__xss=(window.__xss||0)+1;alert(document.domain)"
MARKUP = [
    f"<script>{RUN}</script>",
    f'"><img src=x onerror="{RUN}">',
    f'\'><svg onload="{RUN}">',
    f"</textarea></pre><script>{RUN}</script>",
    f'<a href="javascript:{RUN}" id="xss-link">click</a>',
    "{{ 7 * 7 }}{% raw %}",
]
#: What a person must see of each, as text, on its event's page.
SHOWN = [
    "<script>window",
    "<img src=x onerror=",
    "<svg onload=",
    "</textarea></pre><script>",
    "<a href=",
    "{{ 7 * 7 }}{% raw %}",
]


@pytest.fixture
def live_server(app_factory: Any, hooks: Any, stub: FakeStripe) -> Iterator[tuple[str, Flask]]:
    app = make(app_factory, stub, STRIPE_HOOKS_ADMIN_AUTH=allow)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]

    @app.get("/unsafe-control")
    def unsafe_control() -> str:  # what an unescaped page would do: the harness must see it
        return f"<p>control</p>{MARKUP[1]}"

    base, stop = serve_wsgi(app)
    try:
        yield base, app
    finally:
        stop()


def seed_markup(app: Flask, hooks: Any) -> list[str]:
    """Events, a failure and deliveries whose every shown field carries markup."""

    @hooks.on("charge.failed")
    def breaks(event: Any, **kwargs: Any) -> None:
        raise ValueError(f"card declined: {MARKUP[0]} {MARKUP[1]}")

    @hooks.on("customer")
    def writes(event: Any, **kwargs: Any) -> None:
        record(app, event.id, "customer")

    with app.app_context():
        endpoint = create_endpoint(
            app.extensions["sqlalchemy"], description=MARKUP[1], account=MARKUP[2][:255]
        )
    client = app.test_client()
    ids = []
    for n, markup in enumerate(MARKUP):
        data = {"description": markup, "metadata": {markup: markup}, "name": markup}
        event_id = f"evt_{n}_{markup[:40]}".replace("/", "|")  # a path segment
        event = build_event("customer.created", data, event_id=event_id)
        event["account"] = markup[:255]
        # Forwarded through a proxy that trusts the first hop: remote_addr is the markup.
        headers = {"X-Forwarded-For": markup.replace(",", " ")[:60]}
        assert deliver(client, endpoint, event, headers=headers).status_code == 200
        ids.append(event["id"])
    failing = build_event("charge.failed", {"failure_message": MARKUP[3]})
    assert deliver(client, endpoint, failing).status_code == 500
    odd_type = build_event("customer.created", event_id="evt_type")
    odd_type["type"] = f"customer.{MARKUP[1]}"
    assert deliver(client, endpoint, odd_type).status_code == 200
    return [*ids, failing["id"], odd_type["id"], str(endpoint.uuid)]


@on_sqlite
def test_markup_in_event_data_is_shown_escaped_in_the_browser(
    live_server, hooks, secret_leak_guard
):
    from playwright.sync_api import sync_playwright

    base, app = live_server
    *event_ids, endpoint_uuid = seed_markup(app, hooks)
    with app.test_request_context():
        pages = [
            (url_for("stripe_hooks_admin.endpoint_list"), SHOWN[1]),
            (url_for("stripe_hooks_admin.endpoint_detail", endpoint_uuid=endpoint_uuid), SHOWN[1]),
            (url_for("stripe_hooks_admin.event_list"), "customer." + MARKUP[1][:20]),
            (url_for("stripe_hooks_admin.delivery_list"), SHOWN[0]),
            (url_for("stripe_hooks_admin.event_list", type=MARKUP[1]), ""),
            (url_for("stripe_hooks_admin.delivery_list", endpoint_uuid=MARKUP[0]), ""),
            *(
                (url_for("stripe_hooks_admin.event_detail", event_id=i), shown)
                for i, shown in zip(event_ids, [*SHOWN, SHOWN[0], SHOWN[1]], strict=True)
            ),
        ]
    dialogs: list[str] = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            for csp in (True, False):
                context = browser.new_context()
                if not csp:  # escaping must hold on its own, not only behind the CSP
                    context.route("**/*", strip_csp)
                page = context.new_page()
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                for path, shown in pages:
                    response = page.goto(base + path)
                    assert response is not None and response.status in (200, 400), path
                    check_page(page, path, shown)
                    secret_leak_guard.scan("browser page " + path, page.content())
                    count("admin pages checked in the browser")
                # The real form: "process again" on the event with markup in its id.
                page.goto(base + pages[6][0])
                follow(page, "form.inline-form [type=submit]")
                assert "processed again" in page.inner_text("main")
                check_page(page, "after process again", SHOWN[0])
                assert dialogs == []
                # The control: an unescaped page, without the CSP, does run the payload.
                if not csp:
                    page.goto(base + "/unsafe-control")
                    page.wait_for_function("window.__xss === 1")
                    assert dialogs == ["127.0.0.1"]
                context.close()
        finally:
            browser.close()
    count("markup payloads checked", len(MARKUP))


def strip_csp(route: Any) -> None:
    response = route.fetch()
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-security-policy"}
    route.fulfill(response=response, headers=headers)


def check_page(page: Any, path: str, shown: str) -> None:
    """Nothing ran, nothing was injected, and the markup is there to read as text."""
    page.wait_for_load_state("load")
    assert page.evaluate("window.__xss") is None, path
    assert page.query_selector_all("img[src='x'], svg[onload], #xss-link") == [], path
    scripts = page.eval_on_selector_all("script", "els => els.map(e => e.src)")
    assert all(src.endswith("/stripe_hooks/admin.js") for src in scripts), (path, scripts)
    assert shown in page.inner_text("body"), (path, shown)


# -- the secret-leak guard -------------------------------------------------------------


def test_leak_guard_catches_responses_cli_output_logs_and_the_session(
    app_factory, secret_leak_guard
):
    """The guard must be able to fail: each channel leaks on purpose, then it is reset."""
    app = app_factory()
    leaked = "whsec_" + "L" * 32

    @app.get("/leak/<where>")
    def leak(where: str) -> Any:
        from flask import flash

        if where == "body":
            return f"<p>{leaked}</p>"
        if where == "header":
            return Response("ok", headers={"X-Debug": "sk_live_" + "K" * 24})
        if where == "session":
            flash(f"rotated to {leaked}")  # kept in the signed (not encrypted) session cookie
            return "ok"
        return "whsec_•••••••• sk_test_... whsec_..."

    @app.cli.command("leaky")
    def leaky() -> None:
        click.echo(f"secret is {leaked}")

    client = app.test_client()
    for where in ("body", "header", "session"):
        client.get(f"/leak/{where}")
    app.test_cli_runner().invoke(args=["leaky"])
    logging.getLogger("flask_stripe_hooks").debug("configured %s", leaked)
    found = {item.split(":")[0] for item in secret_leak_guard.leaks}
    assert found == {
        "response to GET /leak/body",
        "response to GET /leak/header (headers)",
        "response to GET /leak/session (session)",
        "CLI output",
        "log record of flask_stripe_hooks",
    }
    assert all(leaked not in item for item in secret_leak_guard.leaks)  # only a prefix shown
    secret_leak_guard.leaks.clear()
    app.test_client().get("/leak/none")  # masked values and the words alone are fine
    assert secret_leak_guard.leaks == []


# -- remote address ----------------------------------------------------------------------


def remote_addrs(app: Flask) -> list[str | None]:
    return [d.remote_addr for d in rows(app, WebhookDelivery)]


def test_remote_addr_is_stored_and_forwarded_for_is_not_trusted(app, client, endpoint):
    forged = {"X-Forwarded-For": "198.51.100.66", "X-Real-IP": "198.51.100.67"}
    body, header = sign_payload(build_event("customer.created"), endpoint.secrets[0]["secret"])
    response = client.post(
        f"/stripe/webhook/{endpoint.uuid}/",
        data=body,
        headers={"Stripe-Signature": header, **forged},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    assert response.status_code == 200
    bad = client.post(
        f"/stripe/webhook/{endpoint.uuid}/",
        data="{}",
        headers={"Stripe-Signature": "t=1,v1=00", **forged},
        environ_base={"REMOTE_ADDR": "203.0.113.8"},
    )
    assert bad.status_code == 400
    assert remote_addrs(app) == ["203.0.113.7", "203.0.113.8"]


def test_behind_proxyfix_the_last_hop_is_stored(app, client, endpoint):
    """``ProxyFix(x_for=1)``: one proxy in front; its own entry (the last) is the client."""
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)
    secret = endpoint.secrets[0]["secret"]
    for forwarded in ("198.51.100.1", "6.6.6.6, 198.51.100.2"):
        body, header = sign_payload(build_event("customer.created"), secret)
        response = client.post(
            f"/stripe/webhook/{endpoint.uuid}/",
            data=body,
            headers={"Stripe-Signature": header, "X-Forwarded-For": forwarded},
            environ_base={"REMOTE_ADDR": "10.0.0.2"},  # the proxy
        )
        assert response.status_code == 200
    assert remote_addrs(app) == ["198.51.100.1", "198.51.100.2"]


def test_a_long_forwarded_address_cannot_break_a_delivery(app, client, endpoint):
    """A proxy set to trust too many hops passes on whatever the client wrote: the stored
    address is cut to its column, never a 5xx."""
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=2)
    body, header = sign_payload(build_event("customer.created"), endpoint.secrets[0]["secret"])
    response = client.post(
        f"/stripe/webhook/{endpoint.uuid}/",
        data=body,
        headers={"Stripe-Signature": header, "X-Forwarded-For": "A" * 300 + ", 198.51.100.3"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert response.status_code == 200
    bad = client.post(
        f"/stripe/webhook/{endpoint.uuid}/",
        data="{}",
        headers={"Stripe-Signature": "t=1,v1=00", "X-Forwarded-For": "B" * 300 + ", 1.2.3.4"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert bad.status_code == 400
    assert remote_addrs(app) == ["A" * 64, "B" * 64]
