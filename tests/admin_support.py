"""What the admin tests share: the auth callables an app would write, and Chromium."""

from __future__ import annotations

import os
from typing import Any

from flask import Response, request

from helpers import missing

ADMIN = "/stripe-hooks/admin"
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


def allow() -> bool:
    return True


def basic_auth() -> bool | Response:
    """What an app does: HTTP basic auth, a 401 asking for it otherwise."""
    auth = request.authorization
    if auth and auth.username == "admin" and auth.password == "pw":
        return True
    return Response("login", 401, {"WWW-Authenticate": 'Basic realm="admin"'})


def launch_chromium(playwright: Any) -> Any:
    __tracebackhide__ = True
    if not os.access(CHROMIUM, os.X_OK):
        missing("Chromium", "apt-get install chromium")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
