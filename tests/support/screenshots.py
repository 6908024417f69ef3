"""The screenshots of docs/admin.md, taken in Chromium from the example app.

    cd tests && python -m support.screenshots             # writes docs/img/admin-*.png
    cd tests && python -m support.screenshots /tmp/shots  # anywhere else

The example app runs on SQLite in a temporary folder, on loopback, with Stripe's API answered
by flask_stripe_hooks.testing.FakeStripe; its admin is filled by admin_support.seed_history.
Each picture is the visible window only (not the whole page), which keeps the PNGs small.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from flask_stripe_hooks.testing import FakeStripe

from .admin_support import (  # noqa: E402
    ADMIN,
    DESKTOP,
    PASSWORD,
    PHONE,
    follow,
    launch_chromium,
    log_in,
    seed_history,
    serve_example,
)

DOCS_IMG = Path(__file__).parents[2] / "docs" / "img"


def take(folder: Path, browser: Any = None) -> list[Path]:
    """Take every screenshot into ``folder`` (with this Playwright browser, or a Chromium of
    its own); the files written."""
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                return take(folder, browser)
            finally:
                browser.close()

    from playwright.sync_api import Error as PlaywrightError

    folder.mkdir(parents=True, exist_ok=True)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log
    logging.getLogger("flask_stripe_hooks").setLevel(logging.CRITICAL)  # the failure is shown
    written: list[Path] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeStripe(keys={"sk_test_stub", "sk_live_stub"}) as stub,
    ):
        app, base, stop = serve_example(
            f"sqlite:///{tmp}/shots.db", stub.url, ADMIN_PASSWORD=PASSWORD
        )
        page = browser.new_page(viewport=DESKTOP)
        try:
            seeded = seed_history(app, base)
            log_in(page, base)

            def capture(name: str, **kwargs: Any) -> None:
                written.append(folder / name)
                for attempt in range(3):  # a busy machine's Chromium may fail to capture once
                    try:
                        page.screenshot(path=str(written[-1]), **kwargs)
                        return
                    except PlaywrightError:
                        if attempt == 2:
                            raise
                        page.wait_for_timeout(500)

            def shot(name: str, path: str, **kwargs: Any) -> None:
                page.goto(base + ADMIN + path)
                capture(name, **kwargs)

            shot("admin-endpoints.png", "/", clip={"x": 0, "y": 0, **DESKTOP, "height": 360})
            page.goto(base + ADMIN + "/endpoints/new")
            page.fill("#base_url", "https://shop.invalid")
            follow(page, "#submit")  # Stripe refuses it: the error under the field
            page.locator("#field-base_url").scroll_into_view_if_needed()
            capture("admin-add-endpoint.png")
            shot("admin-events.png", "/events/")
            page.goto(f"{base}{ADMIN}/events/{seeded['failed']}")
            follow(page, "input[value='Process again']")  # fails again: its traceback is shown
            capture("admin-event-failed.png")
            page.locator("#handlers").scroll_into_view_if_needed()
            page.evaluate("document.getElementById('handlers').scrollIntoView()")
            capture("admin-event-handlers.png")
            page.set_viewport_size(PHONE)
            shot("admin-events-phone.png", "/events/")
            shot("admin-endpoints-phone.png", "/")
        finally:
            page.close()
            stop()
    return written


if __name__ == "__main__":
    for path in take(Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS_IMG):
        print(f"{path} ({path.stat().st_size // 1024} KB)")
