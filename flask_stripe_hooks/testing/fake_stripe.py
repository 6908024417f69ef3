"""A fake Stripe API on loopback, for tests and for trying the extension without an account.

It speaks Stripe's wire format, so the real stripe-python reaches it through
``STRIPE_HOOKS_API_BASE`` (stripe-python's ``api_base``): form-encoded ``/v1`` bodies
(``enabled_events[0]=...``), JSON ``/v2`` bodies, ``Authorization: Bearer sk_...``; answers are
Stripe's JSON objects, and errors Stripe's error JSON ``{"error": {"type", "message", ...}}``
with Stripe's status codes (401 without a valid key, 404 for an unknown id).

It serves:

- ``/v1/webhook_endpoints``: create (answering the one-time ``secret``), retrieve, update,
  delete, list;
- ``/v1/events``: list (``created[gte|gt|lte|lt]``, ``type``, ``types[]``,
  ``delivery_success``, ``starting_after``, ``limit``) and retrieve, for events added with
  :meth:`FakeStripe.add_event`, or posted to ``POST /_fake/events`` (the fake's own path,
  not Stripe's: :mod:`._events`);
- ``/v2/core/event_destinations`` (create, retrieve, update, enable, disable, delete, list),
  ``/v2/core/events`` (list: ``created[...]``, ``types[]``, ``object_id``, pages),
  ``/v2/core/events/{id}`` (:meth:`FakeStripe.add_thin_event`) and ``GET`` of any object
  added with :meth:`FakeStripe.add_object` (a subscription for ``fetch_object()``, a thin
  event's related object).

Connect as on Stripe: an object, event or thin event added for a connected account
(``account="acct_..."``, an event's ``account``, a thin event's ``context``) belongs to it. A
request acts in the account its ``Stripe-Context`` (its last segment) or ``Stripe-Account``
names, else in the key's own (the platform's): it sees only that account's objects and
events, and anything else is ``404 No such ...``. Organization keys (``sk_org_...``) are
refused without ``Stripe-Context``, as Stripe refuses them.

In your tests::

    from flask_stripe_hooks.testing import FakeStripe

    with FakeStripe() as stripe_api:
        app.config["STRIPE_HOOKS_API_BASE"] = stripe_api.url
        ...  # create-endpoint, the admin's "Add endpoint", fetch-missed ...
        assert stripe_api.requests[-1].form["enabled_events"] == ["customer.created"]

As a server, to try the admin's "Add endpoint" or ``fetch-missed`` without a Stripe account::

    python -m flask_stripe_hooks.testing.fake_stripe --port 12111
    curl -d '{"type": "invoice.paid"}' http://127.0.0.1:12111/_fake/events

Everything is kept in memory; nothing is sent anywhere.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .. import event_types
from ..utils import mode_name
from . import _v2_lists
from ._destinations import Destinations
from ._events import EVENTS_PATH, Events
from ._wire import Recorded, StripeError, decode_form, last_segment, not_found, page

#: Stripe's per-account limit on webhook endpoints (per mode).
MAX_ENDPOINTS = 16
_KEY = re.compile(r"(?:sk|rk|sk_org)_(test|live)_\w+")


@dataclass
class FakeStripe(Events, Destinations):
    """A fake Stripe API on ``127.0.0.1`` (a free port by default) in a thread.

    ``with FakeStripe() as stripe_api:`` (or :meth:`start` / :meth:`stop`); ``stripe_api.url``
    is the ``STRIPE_HOOKS_API_BASE``. ``keys`` are the API keys it accepts; by default any
    key shaped like one (``sk_test_...`` for test mode, ``sk_live_...`` for live mode;
    ``sk_org_test_...`` and ``sk_org_live_...``, organization keys, likewise).
    """

    keys: set[str] | None = None
    host: str = "127.0.0.1"
    port: int = 0
    #: Every request as it arrived, oldest first.
    requests: list[Recorded] = field(default_factory=list)
    #: Webhook endpoints by id, as Stripe keeps them (without the secret).
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Events served by ``/v1/events`` (add with :meth:`add_event` or ``POST /_fake/events``).
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Answers for the next requests, from :meth:`fail_next`.
    faults: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    #: Every signing secret handed out, by endpoint or destination id (Stripe shows each once).
    secrets: dict[str, str] = field(default_factory=dict)
    #: The id the next created endpoint gets (default: a random ``we_...``).
    next_id: str | None = None
    #: Event destinations by id, as Stripe keeps them (no secret, no URL).
    destinations: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The URL of each destination (Stripe shows it only when asked with ``include``).
    destination_urls: dict[str, str] = field(default_factory=dict)
    #: Full thin events served by ``GET /v2/core/events/{id}``.
    thin_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Any object served by ``GET {path}`` (related objects).
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The connected account that owns an object (by path) or a thin event (by id); an
    #: event's owner is its ``account``. Unlisted: the platform's.
    owners: dict[str, str] = field(default_factory=dict)
    #: The platform's own account id: ``Stripe-Account`` naming it acts as the platform.
    platform: str = "acct_1FakePlatform"
    #: The connected accounts the platform may act as; others are refused (403
    #: ``account_invalid``). ``None``: any.
    connected: set[str] | None = None
    url: str = ""
    #: Print one line per request (the server's command line does).
    log: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._pages: _v2_lists.Pages = {}  # the v2 lists' page tokens

    # -- control ------------------------------------------------------------------------

    def start(self) -> FakeStripe:
        """Listen (on ``port``, or a free one) and serve from a daemon thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._serve(self)

            do_POST = do_DELETE = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                if fake.log:
                    super().log_message(format, *args)

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{self.host}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every object, request and fault (between tests sharing one server)."""
        with self._lock:
            for kept in (
                self.requests,
                self.endpoints,
                self.events,
                self.faults,
                self.secrets,
                self.destinations,
                self.destination_urls,
                self.thin_events,
                self.objects,
                self.owners,
            ):
                kept.clear()
            self.next_id = None
            self._pages.clear()

    def fail_next(self, status: int, error: dict[str, Any]) -> None:
        """Answer the next request with this HTTP status and ``{"error": error}``."""
        self.faults.append((status, {"error": error}))

    def calls(self, method: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if method is None or r.method == method]

    def add_endpoint(self, livemode: bool = False, **fields: Any) -> dict[str, Any]:
        """An endpoint made elsewhere (the Dashboard), as Stripe stores it."""
        with self._lock:
            endpoint = self._new(livemode, {"url": "https://elsewhere.example/hook", **fields})
        endpoint.pop("secret")
        return endpoint

    def add_thin_event(self, notification: dict[str, Any], **data: Any) -> dict[str, Any]:
        """The full ``v2.core.event`` behind a notification, as ``/v2/core/events`` gives it."""
        event = {**notification, "data": data or None, "changes": None}
        with self._lock:
            self.thin_events[notification["id"]] = event
            self.owners[notification["id"]] = last_segment(notification.get("context") or "")
        return event

    def add_object(self, url: str, obj: dict[str, Any], *, account: str = "") -> dict[str, Any]:
        """Serve ``obj`` at ``GET url`` (``/v1/subscriptions/sub_...``, a thin event's
        ``related_object.url``), to the connected ``account`` only when one is given."""
        with self._lock:
            self.objects[url] = obj
            self.owners[url] = account
        return obj

    # -- the API ------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode() if length else ""
        is_json = handler.headers.get("Content-Type", "").startswith("application/json")
        pairs = [] if is_json else parse_qsl(raw, keep_blank_values=True)  # /v2: JSON bodies
        record = Recorded(
            method=handler.command,
            path=parts.path,
            query=decode_form(parse_qsl(parts.query, keep_blank_values=True)),
            headers=dict(handler.headers.items()),
            pairs=pairs,
            form=decode_form(pairs),
            body=raw,
        )
        with self._lock:
            self.requests.append(record)
            try:
                status, body = self._answer(record)
            except StripeError as exc:
                status, body = exc.status, exc.body
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Request-Id", "req_" + secrets.token_hex(7))
        handler.send_header("Stripe-Version", record.headers.get("Stripe-Version", "fake"))
        handler.end_headers()
        handler.wfile.write(data)

    def _livemode(self, request: Recorded) -> bool:
        key = request.api_key
        if not key:
            raise StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the"
                " Authorization header, using Bearer auth (e.g. 'Authorization: Bearer"
                " YOUR_SECRET_KEY').",
            )
        if (key not in self.keys) if self.keys is not None else not _KEY.fullmatch(key):
            shown = key[:8] + "*" * 8 + key[-4:] if len(key) > 12 else "****"
            raise StripeError(401, f"Invalid API Key provided: {shown}")
        return key.startswith(("sk_live_", "rk_live_", "sk_org_live_"))

    def _acting(self, request: Recorded) -> str:
        """The connected account a request acts in; ``""``: the platform."""
        context = request.headers.get("Stripe-Context", "")
        if request.api_key.startswith("sk_org_") and not context:
            raise StripeError(
                400,
                "Requests made with an organization API key must include a Stripe-Context"
                " header naming the account to act in.",
            )
        account = last_segment(context) or request.headers.get("Stripe-Account", "")
        if account in ("", self.platform):
            return ""
        if self.connected is not None and account not in self.connected:
            raise StripeError(
                403,
                f"The provided key does not have access to account '{account}' (or that"
                " account does not exist). Application access may have been revoked.",
                code="account_invalid",
            )
        return account

    def _answer(self, request: Recorded) -> tuple[int, dict[str, Any]]:
        path, method = request.path.rstrip("/"), request.method
        if path == EVENTS_PATH and method == "POST":  # the fake's own: no key, no fault
            return 200, self._post_event(request)
        if self.faults:
            return self.faults.pop(0)
        livemode = self._livemode(request)
        acting = self._acting(request)
        if path in self.objects and method == "GET":
            obj = self.objects[path]
            if self.owners.get(path, "") != acting:
                raise not_found(str(obj.get("object", "object")), str(obj.get("id")))
            return 200, obj
        if path.startswith("/v2/"):
            return self._answer_v2(request, livemode, path, acting)
        if path == "/v1/webhook_endpoints":
            if method == "POST":
                return 200, self._create(livemode, request.form)
            if method == "GET":
                return 200, self._list(livemode, request.query)
        event = self._answer_events(request, livemode, acting)
        if event is not None:
            return 200, event
        match = re.fullmatch(r"/v1/webhook_endpoints/([^/]+)", path)
        if match:
            endpoint = self.endpoints.get(match.group(1))
            if endpoint is None or endpoint["livemode"] != livemode:
                raise not_found("webhook endpoint", match.group(1))
            if method == "GET":
                return 200, endpoint
            if method == "POST":
                return 200, self._update(endpoint, request.form)
            if method == "DELETE":
                del self.endpoints[endpoint["id"]]
                return 200, {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}
        raise StripeError(404, f"Unrecognized request URL ({method}: {request.path}).")

    @staticmethod
    def _check_events(form: dict[str, Any]) -> list[str]:
        events = form.get("enabled_events")
        if not isinstance(events, list) or not events:
            raise StripeError(
                400, "Missing required param: enabled_events.", param="enabled_events"
            )
        known = set(event_types.all_event_types()) | {"*"}
        for i, name in enumerate(events):
            if name not in known:
                raise StripeError(
                    400,
                    f"Invalid enabled_events[{i}]: must be one of *, account.updated, ...",
                    param=f"enabled_events[{i}]",
                )
        return events

    @staticmethod
    def _check_url(url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url or ""):
            raise StripeError(
                400,
                "Invalid URL: An explicit scheme (such as https) must be provided.",
                param="url",
            )
        if (urlsplit(url).hostname or "").endswith(".invalid"):  # does not resolve
            raise StripeError(
                400,
                "Invalid URL: URL must be publicly accessible. Consider using a tool like the"
                " Stripe CLI to test webhooks locally: https://github.com/stripe/stripe-cli",
                param="url",
            )
        return url

    def _new(self, livemode: bool, form: dict[str, Any]) -> dict[str, Any]:
        mine = [e for e in self.endpoints.values() if e["livemode"] == livemode]
        if len(mine) >= MAX_ENDPOINTS:
            raise StripeError(
                400,
                f"You have reached the maximum of {MAX_ENDPOINTS} {mode_name(livemode)} webhook"
                " endpoints.",
            )
        endpoint: dict[str, Any] = {
            "id": self.next_id or "we_" + secrets.token_hex(12),
            "object": "webhook_endpoint",
            "api_version": form.get("api_version"),
            "application": None,
            "created": int(time.time()),
            "description": form.get("description") or None,
            "enabled_events": form.get("enabled_events") or ["*"],
            "livemode": livemode,
            "metadata": form.get("metadata") or {},
            "secret": "whsec_" + secrets.token_hex(16),
            "status": "enabled",
            "url": form.get("url"),
        }
        self.next_id = None
        self.endpoints[endpoint["id"]] = {k: v for k, v in endpoint.items() if k != "secret"}
        self.secrets[endpoint["id"]] = endpoint["secret"]
        return endpoint

    def _create(self, livemode: bool, form: dict[str, Any]) -> dict[str, Any]:
        self._check_url(form.get("url", ""))
        self._check_events(form)
        version = form.get("api_version")
        if version is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}(\.\w+)?", version):
            raise StripeError(400, f"Invalid api_version: {version}", param="api_version")
        return self._new(livemode, form)

    def _update(self, endpoint: dict[str, Any], form: dict[str, Any]) -> dict[str, Any]:
        if "url" in form:
            endpoint["url"] = self._check_url(form["url"])
        if "enabled_events" in form:
            endpoint["enabled_events"] = self._check_events(form)
        if "description" in form:
            endpoint["description"] = form["description"] or None
        if "disabled" in form:
            endpoint["status"] = "disabled" if form["disabled"] == "true" else "enabled"
        if "metadata" in form:
            endpoint["metadata"] = {
                k: v for k, v in {**endpoint["metadata"], **form["metadata"]}.items() if v
            }
        return endpoint

    def _list(self, livemode: bool, query: dict[str, Any]) -> dict[str, Any]:
        mine = (e for e in self.endpoints.values() if e["livemode"] == livemode)
        return page(mine, query, "/v1/webhook_endpoints")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m flask_stripe_hooks.testing.fake_stripe``: serve until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m flask_stripe_hooks.testing.fake_stripe",
        description="A fake Stripe API on loopback, to try webhook endpoints without an account.",
    )
    parser.add_argument("--port", type=int, default=12111, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    try:
        fake = FakeStripe(host=args.host, port=args.port, log=True).start()
    except OSError as exc:
        parser.exit(
            1,
            f"Cannot listen on {args.host}:{args.port} ({exc.strerror});"
            " choose another with --port.\n",
        )
    print(
        f"Fake Stripe API on {fake.url} (Ctrl-C to stop). Point your app at it:\n"
        f"  export STRIPE_HOOKS_API_BASE={fake.url}\n"
        "  export STRIPE_TEST_SECRET_KEY=sk_test_fake    # any sk_test_... works here\n"
        "Add an event Stripe has, for 'flask stripe-hooks fetch-missed' to find:\n"
        f'  curl -d \'{{"type": "invoice.paid"}}\' {fake.url}{EVENTS_PATH}\n',
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
