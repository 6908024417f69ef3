"""The admin in a real browser: Playwright driving Debian's Chromium against the example app
served by a real WSGI server on loopback, with Stripe's API answered by tests/stripe_stub.py.

Set ``UPDATE_DOCS_SCREENSHOTS=1`` to write the screenshots used by docs/endpoints.md into
docs/img/ (otherwise they go to the test's temporary folder).
"""

from __future__ import annotations

import os
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask_stripe_hooks.models import WebhookEndpoint
from flask_stripe_hooks.testing import build_event, sign_payload, webhook_path
from werkzeug.serving import make_server

from admin_support import ADMIN, launch_chromium
from helpers import rows
from stripe_stub import StripeStub

PASSWORD = "correct horse battery staple"
DOCS_IMG = Path(__file__).parent.parent / "docs" / "img"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def serve(database_url: str, stub: StripeStub) -> Iterator[Callable[..., tuple[Any, str]]]:
    """``serve(**config)``: the example app on a real server on loopback → (app, base URL)."""
    from example_app import create_app, db

    running: list[tuple[Any, Any]] = []

    def start(**config: Any) -> tuple[Any, str]:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": database_url,
                "SECRET_KEY": "browser-test-secret-key",
                "STRIPE_HOOKS_API_BASE": stub.url,
                "STRIPE_TEST_SECRET_KEY": "sk_test_stub",
                **config,
            }
        )
        with app.app_context():
            db.create_all()
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        running.append((app, server))
        return app, f"http://127.0.0.1:{server.server_port}"

    yield start
    for app, server in running:
        server.shutdown()
        server.server_close()
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []  # script errors and CSP violations show up here
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    yield page
    context.close()
    assert [e for e in errors if "status of 4" not in e] == []  # 4xx pages are expected


def shot(page: Any, name: str, tmp_path: Path) -> None:
    folder = DOCS_IMG if os.environ.get("UPDATE_DOCS_SCREENSHOTS") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=True)


def post(url: str, body: str, header: str) -> int:
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Stripe-Signature": header}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def fits_the_screen(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_log_in_create_see_error_disable(serve, page, stub, tmp_path):
    app, base = serve(ADMIN_PASSWORD=PASSWORD)

    # Not logged in: the example app sends the browser to its login page.
    page.goto(base + ADMIN + "/")
    assert page.url == f"{base}/login?next={ADMIN}/"
    page.fill("#username", "admin")
    page.fill("#password", "wrong")
    page.click("#submit")
    assert page.get_by_role("alert").inner_text() == "Wrong user name or password."
    page.fill("#username", "admin")
    page.fill("#password", PASSWORD)
    page.click("#submit")
    assert page.url == f"{base}{ADMIN}/"
    assert "No endpoints yet" in page.inner_text("main")

    # The add form: the base URL is prefilled from the request, with a warning for loopback.
    page.click("text=Add endpoint")
    assert page.input_value("#base_url") == base
    assert "Stripe cannot reach 127.0.0.1" in page.inner_text("#base-url-warning")
    assert page.is_checked("input[name=mode][value=test]")

    # The filter box narrows the 250-odd event types (what is selected stays in view).
    assert page.eval_on_selector_all("#events option:checked", "o => o.map(o => o.value)") == ["*"]
    page.fill("input[data-filter-for=events]", "subscription.")
    shown = page.eval_on_selector_all(
        "#events option", "options => options.filter(o => !o.hidden).map(o => o.value)"
    )
    assert shown[0] == "*" and "customer.subscription.created" in shown
    assert all("subscription." in name for name in shown[1:])
    assert "invoice.paid" not in shown
    page.select_option("#events", ["customer.subscription.created", "invoice.paid"])
    assert page.inner_text("[data-count-for=events]").startswith("2 selected")
    page.fill("#description", "Main shop")
    page.fill("#metadata", "team=billing")

    # Stripe refuses the URL: its message is shown under the base URL field.
    page.fill("#base_url", "https://shop.invalid")
    shot(page, "admin-add-endpoint.png", tmp_path)
    page.click("#submit")
    assert "URL must be publicly accessible" in page.inner_text("#base_url-error")
    assert page.eval_on_selector_all(
        "#events option:checked", "options => options.map(o => o.value)"
    ) == ["customer.subscription.created", "invoice.paid"]
    assert rows(app, WebhookEndpoint) == []

    # Fixed: the endpoint is created on Stripe and stored with its secret.
    page.fill("#base_url", "https://shop.example.com")
    page.click("#submit")
    assert "Created test-mode endpoint we_" in page.inner_text(".flash.success")
    (endpoint,) = rows(app, WebhookEndpoint)
    url = f"https://shop.example.com/stripe/webhook/{endpoint.uuid}/"
    assert stub.endpoints[endpoint.stripe_id]["url"] == url
    secret = stub.secrets[endpoint.stripe_id]
    assert endpoint.secrets[0]["secret"] == secret
    assert secret not in page.content()

    # Stripe delivers one event (and someone posts a forged one): the list shows both.
    body, header = sign_payload(build_event("invoice.paid"), secret)
    assert post(base + webhook_path(app, endpoint.uuid), body, header) == 200
    body, header = sign_payload(build_event("invoice.paid"), "whsec_forged_by_someone")
    assert post(base + webhook_path(app, endpoint.uuid), body, header) == 400

    page.click("text=Endpoints")
    row = page.locator(f"tr[data-uuid='{endpoint.uuid}']")
    cells = row.locator("td").all_inner_texts()
    assert cells[:4] == ["test", "default", f"{url}\nMain shop", "enabled"]
    assert cells[4].startswith("customer.subscription.created, invoice.paid")
    assert cells[5].endswith("UTC") and cells[6] == "1"
    shot(page, "admin-endpoints.png", tmp_path)

    # Disable it: on Stripe, then here.
    row.locator("a").first.click()
    page.click("input[value=Disable]")
    assert page.inner_text(".flash.success") == "Endpoint disabled."
    assert stub.endpoints[endpoint.stripe_id]["status"] == "disabled"
    assert rows(app, WebhookEndpoint)[0].status == "disabled"
    assert secret not in page.content()

    # A POST without its CSRF token is refused, and changes nothing.
    page.eval_on_selector("#endpoint-status input[name=csrf_token]", "input => input.remove()")
    with page.expect_navigation() as navigation:
        page.click("input[value=Enable]")
    assert navigation.value.status == 400
    assert "The CSRF token is missing" in page.inner_text("main")
    assert rows(app, WebhookEndpoint)[0].status == "disabled"
    assert stub.endpoints[endpoint.stripe_id]["status"] == "disabled"

    # Readable on a phone: nothing wider than the screen but the tables' own scroll box.
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ["/", "/endpoints/new", f"/endpoints/{endpoint.uuid}", "/deliveries/"]:
        page.goto(base + ADMIN + path)
        assert fits_the_screen(page), path


def test_no_login_no_admin(serve, page):
    # The app has set no STRIPE_HOOKS_ADMIN_AUTH (no password): locked, and says how to open.
    _, base = serve()
    response = page.goto(base + ADMIN + "/")
    assert response.status == 403
    assert "STRIPE_HOOKS_ADMIN_AUTH" in page.inner_text("main")
    assert page.evaluate("getComputedStyle(document.body).margin") == "0px"  # own stylesheet

    # With a login, a POST from a browser that has not logged in gets 403.
    _, base = serve(ADMIN_PASSWORD=PASSWORD)
    page.goto(base + "/login")
    status = page.evaluate(
        """url => fetch(url, {method: "POST", body: new URLSearchParams({disable: "1"})})
                 .then(r => r.status)""",
        f"{base}{ADMIN}/endpoints/00000000-0000-0000-0000-000000000000/status",
    )
    assert status == 403
    assert re.search(r"/login\?next=", page.goto(base + ADMIN + "/events/").url)
