"""What the admin tests share: the auth callables an app would write, Chromium, and the
example app served on loopback with a history of deliveries (also used by screenshots.py)."""

from __future__ import annotations

import html
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from flask_stripe_hooks import endpoints
from flask_stripe_hooks.testing import build_event, sign_payload, webhook_path

from .helpers import missing, serve_wsgi

ADMIN = "/stripe-hooks/admin"
PASSWORD = "correct horse battery staple"
#: Debian's Chromium, driven by Playwright (never a browser Playwright downloads).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: The widths the admin is checked at: a laptop and a phone.
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def page_text(response: Any) -> str:
    """The page as a person reads it: tags dropped, entities decoded, blanks squeezed. A URL's
    parts (<span>s) and its break points (<wbr>) are not spaces."""
    body = re.sub(r"<wbr>|</?span[^>]*>", "", response.get_data(as_text=True))
    body = re.sub(r"<script.*?</script>|<[^>]+>", " ", body, flags=re.S)
    return " ".join(html.unescape(body).split())


def allow() -> bool:
    return True


def basic_auth() -> bool | Response:
    """What an app does: HTTP basic auth, a 401 asking for it otherwise."""
    auth = request.authorization
    if auth and auth.username == "admin" and auth.password == "pw":
        return True
    return Response("login", 401, {"WWW-Authenticate": 'Basic realm="admin"'})


def follow(page: Any, target: Any) -> None:
    """Click a link or a submit button (a selector or a locator) and wait until the page it
    leads to has loaded: a click returns once the navigation starts, before the new page is all
    there, and a count or a read right after it could see half of it."""
    with page.expect_navigation():
        (page.locator(target) if isinstance(target, str) else target).click()


def log_in(page: Any, base: str) -> None:
    page.goto(base + "/login")
    page.fill("#username", "admin")
    page.fill("#password", PASSWORD)
    follow(page, "#submit")


def launch_chromium(playwright: Any) -> Any:
    __tracebackhide__ = True
    if not os.access(CHROMIUM, os.X_OK):
        missing("Chromium", "apt-get install chromium")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def serve_example(
    database_url: str, api_base: str, **config: Any
) -> tuple[Flask, str, Callable[[], None]]:
    """The example app on a real server on loopback → (app, base URL, stop)."""
    from example_app import create_app, db

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SECRET_KEY": "browser-test-secret-key",
            "STRIPE_HOOKS_API_BASE": api_base,
            "STRIPE_TEST_SECRET_KEY": "sk_test_stub",
            "STRIPE_LIVE_SECRET_KEY": "sk_live_stub",
            **config,
        }
    )
    with app.app_context():
        db.create_all()
    base, stop_serving = serve_wsgi(app)

    def stop() -> None:
        stop_serving()
        with app.app_context():
            db.engine.dispose()

    return app, base, stop


def post(url: str, body: str, header: str) -> int:
    """POST a signed delivery as Stripe does; the HTTP status."""
    req = urllib.request.Request(
        url, data=body.encode(), headers={"Stripe-Signature": header}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def seed_history(app: Flask, base: str) -> dict[str, str]:
    """Two endpoints made on the Stripe stub, and deliveries to the first: events of several
    types (one of a connected account), a forged one, and a second ``customer.created`` for a
    stored customer, which the example's handler fails on (the customer's id is unique).

    Returns the first endpoint's uuid and the failed event's id.
    """
    with app.app_context():
        shop = endpoints.create_endpoint(
            base_url="https://shop.example.com",
            events=["customer", "invoice.paid", "invoice.payment_failed", "price.updated"],
            description="Main shop",
        )
        endpoints.create_endpoint(
            base_url="https://shop.example.com", events=["*"], livemode=True, connect=True
        )
        shop_uuid, secret = str(shop.uuid), shop.secrets[0]["secret"]
    url = base + webhook_path(app, shop_uuid)

    def send(event: dict[str, Any], key: str = secret) -> int:
        return post(url, *sign_payload(event, key))

    customer = {"id": "cus_QX2mV8pL4nR7sT", "email": "ada@example.com"}
    for event in [
        build_event("customer.created", customer),
        build_event("price.updated"),
        build_event("customer.subscription.trial_will_end"),
        build_event("invoice.paid"),
        build_event("invoice.payment_failed"),
        build_event("customer.subscription.updated", account="acct_1Nv0FGQ9RKHgCVdK"),
    ]:
        assert send(event) == 200, event["type"]
    assert send(build_event("invoice.paid"), "whsec_forged_by_someone") == 400
    failed = build_event("customer.created", customer)
    assert send(failed) == 500
    return {"endpoint": shop_uuid, "failed": failed["id"]}
