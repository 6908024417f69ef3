"""The admin in a real browser: Playwright driving Debian's Chromium against the example app
served by a real WSGI server on loopback, with Stripe's API answered by
flask_stripe_hooks.testing.FakeStripe. Layouts are checked at a laptop's width (1280 px) and a
phone's (390 px).

Each page runs on one database: the example's SQLite for the flows a user walks first,
PostgreSQL for the layouts (the admin's queries on both are test_admin.py's subject).

The screenshots of docs/admin.md come from tests/support/screenshots.py, which the last test runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask_stripe_hooks.models import WebhookEndpoint
from flask_stripe_hooks.testing import FakeStripe, build_event, sign_payload, webhook_path

from support.admin_support import (
    ADMIN,
    DESKTOP,
    PASSWORD,
    PHONE,
    follow,
    launch_chromium,
    log_in,
    post,
    seed_history,
    serve_example,
)
from support.helpers import on_postgresql, on_sqlite, rows


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def serve(database_url: str, stub: FakeStripe) -> Iterator[Callable[..., tuple[Any, str]]]:
    """``serve(**config)``: the example app on a real server on loopback → (app, base URL)."""
    stops: list[Callable[[], None]] = []

    def start(**config: Any) -> tuple[Any, str]:
        app, base, stop = serve_example(database_url, stub.url, **config)
        stops.append(stop)
        return app, base

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []  # script errors and CSP violations show up here
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    missing: list[str] = []  # a favicon or a stylesheet the pages ask for and do not get
    page.on("response", lambda r: r.status == 404 and missing.append(r.url))
    yield page
    context.close()
    assert [e for e in errors if "status of 4" not in e] == []  # 4xx pages are expected
    assert [url for url in missing if "/_static/" in url or "favicon" in url] == []


def chips(page: Any) -> list[str]:
    """The event types the picker shows as chosen."""
    return [c.removesuffix(" ×") for c in page.locator(".picker .chip").all_inner_texts()]


def visible_types(page: Any, search: str | None = None) -> list[str]:
    """The types the picker lists now (after typing ``search``), ``*`` left out."""
    if search is not None:
        page.fill("#events-search", search)
    return [
        v
        for v in page.eval_on_selector_all(
            "#events-options li:not([hidden]) input", "boxes => boxes.map(b => b.value)"
        )
        if v != "*"
    ]


def fits_the_screen(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


@on_sqlite
def test_log_in_create_see_error_disable(serve, page, stub):
    app, base = serve(ADMIN_PASSWORD=PASSWORD)

    # Not logged in: the example app sends the browser to its login page, in the admin's look.
    page.goto(base + ADMIN + "/")
    assert page.url == f"{base}/login?next={ADMIN}/"  # no stray "?"
    assert page.evaluate("getComputedStyle(document.body).margin") == "0px"  # admin.css
    assert page.inner_text("header .brand") == "Stripe webhooks"
    page.fill("#username", "admin")
    page.fill("#password", "wrong")
    follow(page, "#submit")
    assert page.get_by_role("alert").inner_text() == "Wrong user name or password."
    page.fill("#username", "admin")
    page.fill("#password", PASSWORD)
    follow(page, "#submit")
    assert page.url == f"{base}{ADMIN}/"
    assert "No endpoints yet" in page.inner_text("main")

    # The add form: the base URL is prefilled from the request, with a warning for loopback.
    follow(page, "text=Add endpoint")
    assert page.input_value("#base_url") == base
    assert "Stripe cannot reach 127.0.0.1" in page.inner_text("#base-url-warning")
    assert page.is_checked("input[name=mode][value=test]")

    # The type picker: a search box over the 275 snapshot types, ticked, not Ctrl-clicked.
    assert page.eval_on_selector_all("#events option:checked", "o => o.map(o => o.value)") == ["*"]
    assert page.is_hidden("#events") and page.is_hidden("#field-events .nojs")
    assert chips(page) == ["*"]
    page.fill("#events-search", "subscription.")
    shown = visible_types(page)
    assert "customer.subscription.created" in shown and "invoice.paid" not in shown
    assert all("subscription." in name for name in shown)
    assert not any(name.startswith("v1.") for name in visible_types(page, ""))  # snapshot only
    page.check("#events-options input[value='customer.subscription.created']")
    page.fill("#events-search", "invoice.pa")
    page.check("#events-options input[value='invoice.paid']")
    assert chips(page) == ["customer.subscription.created", "invoice.paid"]  # * gave way
    assert page.eval_on_selector_all("#events option:checked", "o => o.map(o => o.value)") == [
        "customer.subscription.created",
        "invoice.paid",
    ]
    page.fill("#description", "Main shop")
    page.fill("#metadata", "team=billing")

    # Stripe refuses the URL: its message is shown under the base URL field.
    page.fill("#base_url", "https://shop.invalid")
    follow(page, "#submit")
    assert "URL must be publicly accessible" in page.inner_text("#base_url-error")
    assert page.locator(".errors").count() == 1  # shown once, under its field
    assert page.eval_on_selector_all(
        "#events option:checked", "options => options.map(o => o.value)"
    ) == ["customer.subscription.created", "invoice.paid"]
    assert rows(app, WebhookEndpoint) == []

    # Fixed: the endpoint is created on Stripe and stored with its secret.
    page.fill("#base_url", "https://shop.example.com")
    follow(page, "#submit")
    (endpoint,) = rows(app, WebhookEndpoint)
    assert f"Created test-mode endpoint {endpoint.uuid} (we_" in page.inner_text(".flash.success")
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

    follow(page, "text=Endpoints")
    row = page.locator(f"tr[data-uuid='{endpoint.uuid}']")
    cells = row.locator("td").all_inner_texts()
    assert cells[:4] == ["test", "default", f"{url}\nMain shop", "enabled"]
    assert cells[4].startswith("customer.subscription.created, invoice.paid")
    assert cells[5].endswith("UTC") and cells[6] == "1"

    # Its page: the heading "Enabled events" names the list; no label says it again.
    follow(page, row.locator("a").first)
    assert page.get_by_text("Enabled events", exact=True).count() == 1
    named = page.get_by_label("Enabled events")  # the list of boxes, and the select behind it
    assert named.evaluate_all("es => es.map(e => e.id)") == ["events", "events-options"]

    # Disable it: on Stripe, then here.
    follow(page, "input[value=Disable]")
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

    # Back to the app, and log out: the admin asks for the login again.
    follow(page, "#home-link")
    assert page.url == base + "/"
    page.go_back()
    follow(page, "#logout-link")
    assert page.url == base + "/login"
    page.goto(base + ADMIN + "/events/")
    assert page.url == f"{base}/login?next={ADMIN}/events/"


@on_sqlite
def test_no_login_no_admin(serve, page):
    # The app has set no STRIPE_HOOKS_ADMIN_AUTH (no password): locked, and says how to open.
    _, base = serve()
    response = page.goto(base + ADMIN + "/")
    assert response.status == 403
    assert "EXAMPLE_ADMIN_PASSWORD" in page.inner_text("main")  # the example's own page
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


def table_fits(page: Any, table: str) -> bool:
    """Every column of the table is inside its box: no column cut off or scrolled away."""
    return bool(
        page.eval_on_selector(
            table,
            """t => t.parentElement.scrollWidth <= t.parentElement.clientWidth &&
                   t.getBoundingClientRect().right <= window.innerWidth""",
        )
    )


@on_postgresql
def test_lists_fit_a_laptop_and_stack_on_a_phone(serve, page):
    app, base = serve(ADMIN_PASSWORD=PASSWORD)
    seed_history(app, base)
    log_in(page, base)
    lists = {
        "/events/": ("#events-table", "Last error"),
        "/deliveries/": ("#deliveries-table", "Error"),
    }
    for path, (table, last) in lists.items():
        page.goto(base + ADMIN + path)
        assert table_fits(page, table), path
        assert page.locator(f"{table} th").last.inner_text().lower() == last.lower()
        assert "IntegrityError" in page.locator(f"{table} td.error").first.inner_text()
        # The filters' labels line up, their boxes too.
        tops = page.eval_on_selector_all(
            ".filters label", "ls => ls.map(l => Math.round(l.getBoundingClientRect().top))"
        )
        assert len(tops) >= 2 and len(set(tops)) == 1, tops
        boxes = page.eval_on_selector_all(
            ".filters input, .filters select",
            "es => es.map(e => [Math.round(e.getBoundingClientRect().top), e.offsetHeight])",
        )
        assert len({tuple(b) for b in boxes}) == 1, boxes

    # On a phone each row is a card: every cell shown, with its column's name.
    page.set_viewport_size(PHONE)
    for path, (table, last) in lists.items():
        page.goto(base + ADMIN + path)
        assert fits_the_screen(page), path
        assert page.is_hidden(f"{table} thead")
        error = page.locator(f"{table} td.error").first
        assert error.is_visible() and "IntegrityError" in error.inner_text()
        assert error.get_attribute("data-label") == last
        box = error.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        label = error.evaluate("td => getComputedStyle(td, '::before').content")
        assert label == f'"{last}"'
        shown = page.eval_on_selector_all(
            f"{table} tbody tr:first-child td",
            "tds => tds.filter(td => td.offsetHeight > 0).length",
        )
        assert shown == page.locator(f"{table} thead th").count()


@on_sqlite
def test_a_failed_run_is_shown_with_its_traceback(serve, page):
    app, base = serve(ADMIN_PASSWORD=PASSWORD)
    failed = seed_history(app, base)["failed"]
    log_in(page, base)
    page.goto(f"{base}{ADMIN}/events/?status=failed")
    follow(page, f"text={failed}")
    follow(page, "input[value='Process again']")  # the handler fails again, with no delivery
    assert page.inner_text(".flash.error") == f"Event {failed} failed again (handler failed)."
    assert page.inner_text("#last-failure p") == "Attempt 2 failed:"
    assert "IntegrityError" in page.inner_text("#last-error")
    assert page.is_visible("#last-traceback")
    trace = page.inner_text("#last-traceback")
    # The handler whose writes failed is named first: the traceback ends in the pipeline.
    blame, _, rest = trace.partition("\n")
    assert blame == (
        "Handler example_app.handlers.customer_created: its writes failed when flushed after"
        " it returned."
    )
    assert rest.startswith("Traceback (most recent call last):")
    assert "\nsqlalchemy.exc.IntegrityError: " in trace  # the exception, last
    ran = page.locator("#handlers ol.handlers").first.locator("li").all_inner_texts()
    assert [r.split()[0] for r in ran] == [
        "example_app.handlers.every_event",
        "example_app.handlers.any_customer_event",
        "example_app.handlers.customer_created",
    ]
    assert "its writes failed when flushed: IntegrityError" in ran[-1]
    # The icon is the admin's own (no request for a /favicon.ico that is not there).
    icon = page.get_attribute("link[rel=icon]", "href")
    assert icon.endswith("/_static/stripe_hooks/favicon.svg")
    response = page.request.get(base + icon)
    assert response.status == 200 and response.headers["content-type"].startswith("image/svg+xml")


def test_screenshots_script(browser, tmp_path):
    """tests/support/screenshots.py writes the pictures of docs/admin.md, each small enough."""
    from support.screenshots import DOCS_IMG, take

    names = sorted(path.name for path in take(tmp_path, browser))
    assert names == sorted(p.name for p in DOCS_IMG.glob("admin-*.png"))
    for name in names:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) < 150 * 1024, name


def unbroken(page: Any, selector: str) -> list[bool]:
    """For each element, whether every text piece of it (the parts between its <wbr>s) sits
    on one line: no word broken inside."""
    return page.eval_on_selector_all(
        selector,
        """els => els.map(el => {
             const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
             const range = document.createRange();
             for (let node = walker.nextNode(); node; node = walker.nextNode()) {
               if (!node.textContent.trim()) continue;
               range.selectNodeContents(node);
               const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
               if (lines.size > 1) return false;
             }
             return true;
           })""",
    )


@on_postgresql
def test_types_and_urls_break_only_between_their_parts(serve, page):
    app, base = serve(ADMIN_PASSWORD=PASSWORD)
    seed_history(app, base)
    log_in(page, base)
    # A laptop: an event type is whole on one line; a URL breaks only after a "/".
    page.goto(base + ADMIN + "/events/")
    types = page.locator("#events-table td.type code")
    assert types.count() >= 6
    lines = types.evaluate_all(
        "cs => cs.map(c => new Set([...c.getClientRects()].map(r => Math.round(r.top))).size)"
    )
    assert lines == [1] * len(lines)
    page.goto(base + ADMIN + "/")
    assert all(unbroken(page, "#endpoints td.url a"))
    # ... whatever the font: with a much wider one, too.
    page.eval_on_selector_all(
        "#endpoints td.url a",
        "els => els.forEach(e => { e.style.fontSize = '26px'; e.style.letterSpacing = '3px'; })",
    )
    assert all(unbroken(page, "#endpoints td.url a"))
    assert all(unbroken(page, "#endpoints td.events code"))
    page.goto(base + ADMIN + "/events/?object=cus_QX2mV8pL4nR7sT")
    assert page.locator("#events-table tbody tr").count() == 2  # the customer's two events

    # A phone: each delivery is a card with only the rows that say something.
    page.set_viewport_size(PHONE)
    page.goto(base + ADMIN + "/deliveries/")
    cards = page.locator("#deliveries-table tbody tr")
    labels = [
        card.evaluate(
            "tr => [...tr.cells].filter(td => td.offsetHeight > 0).map(td => td.dataset.label)"
        )
        for card in cards.all()
    ]
    processed = [
        shown
        for shown, card in zip(labels, cards.all(), strict=True)
        if "processed" in card.inner_text()
    ]
    assert processed and all("Error" not in shown for shown in processed)
    assert any("Error" in shown for shown in labels)  # the failed one keeps its error
    assert fits_the_screen(page)


@on_postgresql
def test_the_type_picker_on_a_phone_and_without_javascript(serve, browser, page):
    app, base = serve(ADMIN_PASSWORD=PASSWORD)
    log_in(page, base)
    page.set_viewport_size(PHONE)
    page.goto(base + ADMIN + "/endpoints/new")
    assert fits_the_screen(page)
    page.check("input[name=payload][value=thin]")  # the list turns to thin types
    thin = visible_types(page, "meter")
    assert thin and all(name.startswith(("v1.", "v2.")) for name in thin)
    page.click("#field-events button.link")  # "Choose these N"
    assert sorted(chips(page)) == sorted(thin)
    page.check("input[name=payload][value=snapshot]")  # thin choices do not stay
    assert chips(page) == []
    page.check("#events-options input[value='*']")
    assert chips(page) == ["*"]

    # Without JavaScript: the multi-select itself, with a hint to Ctrl-click.
    context = browser.new_context(viewport=DESKTOP, java_script_enabled=False)
    plain = context.new_page()
    try:
        log_in(plain, base)
        plain.goto(base + ADMIN + "/endpoints/new")
        assert plain.is_visible("select#events[multiple]")
        assert "Hold Ctrl" in plain.inner_text("#field-events .nojs")
    finally:
        context.close()


@on_sqlite
def test_bulk_process_again_and_the_audit_trail(serve, page):
    app, base = serve(ADMIN_PASSWORD=PASSWORD)
    seeded = seed_history(app, base)
    log_in(page, base)
    page.goto(base + ADMIN + "/events/?type=customer")
    follow(page, "#process-failed")
    assert page.inner_text("#bulk-count").startswith("1 failed or dead event match type customer")
    follow(page, "input[value='Process them again']")  # the example's handler fails again
    assert page.inner_text(".flash.error") == "Processed 1 failed event(s) again: 1 failed."
    assert page.input_value("#type") == "customer"  # back on the list it came from

    # A new endpoint's audit row lists what it was made with, not a change of a list.
    page.goto(f"{base}{ADMIN}/endpoints/{seeded['endpoint']}")
    created = page.locator("#endpoint-audit tbody tr").last.locator("td").last.inner_text()
    assert "enabled_events: customer, invoice.paid" not in created  # expanded on creation
    assert "enabled_events: customer.created, customer.deleted" in created
    assert "→" not in created and "None" not in created
