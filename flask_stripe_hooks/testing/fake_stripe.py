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
  :meth:`FakeStripe.add_event`;
- ``/v2/core/event_destinations`` (create, retrieve, update, enable, disable, delete, list),
  ``/v2/core/events`` (list: ``created[...]``, ``types[]``, ``object_id``, pages) and
  ``/v2/core/events/{id}`` for events added with :meth:`FakeStripe.add_thin_event`, and
  ``GET`` of any object added with :meth:`FakeStripe.add_object` (a related object).

In your tests::

    from flask_stripe_hooks.testing import FakeStripe

    with FakeStripe() as stripe_api:
        app.config["STRIPE_HOOKS_API_BASE"] = stripe_api.url
        ...  # create-endpoint, the admin's "Add endpoint", fetch-missed ...
        assert stripe_api.requests[-1].form["enabled_events"] == ["customer.created"]

As a server, to try the admin's "Add endpoint" without a Stripe account::

    python -m flask_stripe_hooks.fake_stripe --port 12111

Everything is kept in memory; nothing is sent anywhere.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .. import event_types
from ..utils import mode_name
from . import _v2_lists
from ._wire import Recorded, StripeError, decode_form, not_found, now

#: Stripe's per-account limit on webhook endpoints (per mode).
MAX_ENDPOINTS = 16
_DESTINATION = re.compile(r"/v2/core/event_destinations/([^/]+)(?:/(enable|disable))?")
_KEY = re.compile(r"(sk|rk)_(test|live)_\w+")


@dataclass
class FakeStripe:
    """A fake Stripe API on ``127.0.0.1`` (a free port by default) in a thread.

    ``with FakeStripe() as stripe_api:`` (or :meth:`start` / :meth:`stop`); ``stripe_api.url``
    is the ``STRIPE_HOOKS_API_BASE``. ``keys`` are the API keys it accepts; by default any
    key shaped like one (``sk_test_...`` for test mode, ``sk_live_...`` for live mode).
    """

    keys: set[str] | None = None
    host: str = "127.0.0.1"
    port: int = 0
    #: Every request as it arrived, oldest first.
    requests: list[Recorded] = field(default_factory=list)
    #: Webhook endpoints by id, as Stripe keeps them (without the secret).
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Events served by ``/v1/events`` (add with :meth:`add_event`).
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

    def add_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """An event Stripe keeps (as ``build_event`` makes them), served by ``/v1/events``.

        ``pending_webhooks`` decides ``delivery_success``: 0 means every delivery succeeded.
        """
        with self._lock:
            self.events.append(event)
        return event

    def add_thin_event(self, notification: dict[str, Any], **data: Any) -> dict[str, Any]:
        """The full ``v2.core.event`` behind a notification, as ``/v2/core/events`` gives it."""
        event = {**notification, "data": data or None, "changes": None}
        with self._lock:
            self.thin_events[notification["id"]] = event
        return event

    def add_object(self, url: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Serve ``obj`` at ``GET url`` (e.g. a thin event's ``related_object.url``)."""
        with self._lock:
            self.objects[url] = obj
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
        return key.startswith(("sk_live_", "rk_live_"))

    def _answer(self, request: Recorded) -> tuple[int, dict[str, Any]]:
        if self.faults:
            return self.faults.pop(0)
        livemode = self._livemode(request)
        path, method = request.path.rstrip("/"), request.method
        if path in self.objects and method == "GET":
            return 200, self.objects[path]
        if path.startswith("/v2/"):
            return self._answer_v2(request, livemode, path)
        if path == "/v1/webhook_endpoints":
            if method == "POST":
                return 200, self._create(livemode, request.form)
            if method == "GET":
                return 200, self._list(livemode, request.query)
        if path == "/v1/events" and method == "GET":
            return 200, self._list_events(livemode, request.query)
        match = re.fullmatch(r"/v1/events/([^/]+)", path)
        if match and method == "GET":
            for event in self.events:
                if event["id"] == match.group(1) and event["livemode"] == livemode:
                    return 200, event
            raise not_found("event", match.group(1))
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

    def _list_events(self, livemode: bool, query: dict[str, Any]) -> dict[str, Any]:
        """``GET /v1/events``: newest first; ``created[gte|gt|lte|lt]``, ``type`` (a name,
        or ``prefix.*``), ``types[]``, ``delivery_success``, ``limit``, ``starting_after``."""
        created = query.get("created")
        bounds = created if isinstance(created, dict) else {}
        if created is not None and not isinstance(created, dict):
            bounds = {"gte": created, "lte": created}
        checks = {
            "gte": lambda c, v: c >= v,
            "gt": lambda c, v: c > v,
            "lte": lambda c, v: c <= v,
            "lt": lambda c, v: c < v,
        }
        wanted_type, wanted_types = query.get("type"), query.get("types")
        if wanted_types is not None and len(wanted_types) > 20:
            raise StripeError(
                400, "Invalid array: types must have at most 20 items.", param="types"
            )

        flag = query.get("delivery_success")
        if flag not in (None, "true", "false"):
            raise StripeError(
                400,
                "Invalid boolean: delivery_success must be true or false.",
                param="delivery_success",
            )
        success = None if flag is None else flag == "true"

        def keep(event: dict[str, Any]) -> bool:
            if event["livemode"] != livemode:
                return False
            if any(not checks[op](event["created"], int(v)) for op, v in bounds.items()):
                return False
            if wanted_type:
                if wanted_type.endswith("*"):
                    if not event["type"].startswith(wanted_type[:-1]):
                        return False
                elif event["type"] != wanted_type:
                    return False
            if success is not None and (event.get("pending_webhooks", 0) == 0) != success:
                return False
            return not wanted_types or event["type"] in wanted_types

        return _page((e for e in self.events if keep(e)), query, "/v1/events")

    def _list(self, livemode: bool, query: dict[str, Any]) -> dict[str, Any]:
        mine = (e for e in self.endpoints.values() if e["livemode"] == livemode)
        return _page(mine, query, "/v1/webhook_endpoints")

    def _answer_v2(
        self, request: Recorded, livemode: bool, path: str
    ) -> tuple[int, dict[str, Any]]:
        method = request.method
        if path == "/v2/core/event_destinations" and method == "POST":
            return 200, self._create_destination(livemode, request.json or {})
        if method == "GET" and path in ("/v2/core/events", "/v2/core/event_destinations"):
            return 200, self._list_v2(livemode, path, request.query)
        match = re.fullmatch(r"/v2/core/events/([^/]+)", path)
        if match and method == "GET":
            event = self.thin_events.get(match.group(1))
            if event is None or event["livemode"] != livemode:
                raise not_found("event", match.group(1), code="not_found")
            return 200, event
        match = _DESTINATION.fullmatch(path)
        if match:
            destination = self.destinations.get(match.group(1))
            if destination is None or destination["livemode"] != livemode:
                raise not_found("event destination", match.group(1), code="not_found")
            action = match.group(2)
            if method == "POST" and action:
                destination["status"] = "enabled" if action == "enable" else "disabled"
                destination["status_details"] = (
                    None if action == "enable" else {"disabled": {"reason": "user"}}
                )
                destination["updated"] = now()
                return 200, destination
            if method == "GET" and not action:
                return 200, self._shown(destination, request.query.get("include"))
            if method == "POST" and not action:
                return 200, self._update_destination(destination, request.json or {})
            if method == "DELETE" and not action:
                del self.destinations[destination["id"]]
                return 200, {"id": destination["id"], "object": "v2.core.event_destination"}
        raise StripeError(404, f"Unrecognized request URL ({method}: {request.path}).")

    def _list_v2(self, livemode: bool, path: str, query: dict[str, Any]) -> dict[str, Any]:
        """``GET /v2/core/events`` and ``GET /v2/core/event_destinations`` (see ``_v2_lists``)."""
        if path == "/v2/core/events":
            return _v2_lists.list_events(self.thin_events.values(), livemode, query, self._pages)
        destinations = self.destinations.values()
        return _v2_lists.list_destinations(destinations, livemode, query, self._pages, self._shown)

    @staticmethod
    def _check_thin_events(events: Any) -> list[str]:
        if not isinstance(events, list) or not events:
            raise StripeError(400, "enabled_events must be a non-empty array.")
        known = set(event_types.thin_event_types())
        for name in events:
            if name not in known:
                raise StripeError(
                    400,
                    f"Invalid enabled_events: {name} is not a thin event type.",
                    param="enabled_events",
                )
        return events

    def _create_destination(self, livemode: bool, body: dict[str, Any]) -> dict[str, Any]:
        for required in ("name", "type", "event_payload", "enabled_events"):
            if required not in body:
                raise StripeError(400, f"Missing required param: {required}.", param=required)
        if body["type"] != "webhook_endpoint" or body["event_payload"] not in ("thin", "snapshot"):
            raise StripeError(400, "Invalid type or event_payload.", param="type")
        if body["event_payload"] == "thin":
            self._check_thin_events(body["enabled_events"])
        url = self._check_url((body.get("webhook_endpoint") or {}).get("url", ""))
        destination = {
            "id": "ed_" + ("live_" if livemode else "test_") + secrets.token_hex(10),
            "object": "v2.core.event_destination",
            "created": now(),
            "updated": now(),
            "description": body.get("description") or "",
            "enabled_events": body["enabled_events"],
            "event_payload": body["event_payload"],
            "events_from": body.get("events_from") or ["@self"],
            "livemode": livemode,
            "metadata": body.get("metadata") or {},
            "name": body["name"],
            "snapshot_api_version": body.get("snapshot_api_version"),
            "status": "enabled",
            "status_details": None,
            "type": "webhook_endpoint",
            "webhook_endpoint": {"signing_secret": None, "url": None},
        }
        self.destinations[destination["id"]] = destination
        self.destination_urls[destination["id"]] = url
        self.secrets[destination["id"]] = "whsec_" + secrets.token_hex(16)
        return self._shown(destination, body.get("include"))

    def _shown(self, destination: dict[str, Any], include: Any) -> dict[str, Any]:
        """A destination with what ``include`` asks for (its secret, its URL) filled in."""
        shown = {"signing_secret": self.secrets, "url": self.destination_urls}
        webhook = {
            key: values[destination["id"]] if f"webhook_endpoint.{key}" in (include or []) else None
            for key, values in shown.items()
        }
        return {**destination, "webhook_endpoint": webhook}

    def _update_destination(
        self, destination: dict[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        if "enabled_events" in body:
            destination["enabled_events"] = self._check_thin_events(body["enabled_events"])
        if "description" in body:
            destination["description"] = body["description"]
        if "webhook_endpoint" in body:
            url = self._check_url(body["webhook_endpoint"].get("url", ""))
            self.destination_urls[destination["id"]] = url
        destination["updated"] = now()
        return destination


def _page(objects: Iterable[dict[str, Any]], query: dict[str, Any], url: str) -> dict[str, Any]:
    """One page of a v1 list, newest first: ``starting_after`` and ``limit`` (1-100)."""
    found = sorted(objects, key=lambda o: (o["created"], o["id"]), reverse=True)
    after = query.get("starting_after")
    if after:
        ids = [o["id"] for o in found]
        found = found[ids.index(after) + 1 :] if after in ids else []
    limit = int(query.get("limit") or 10)
    if not 1 <= limit <= 100:
        raise StripeError(400, "Invalid integer: limit must be between 1 and 100.", param="limit")
    return {"object": "list", "data": found[:limit], "has_more": len(found) > limit, "url": url}


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m flask_stripe_hooks.fake_stripe``: serve until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m flask_stripe_hooks.fake_stripe",
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
        "  export STRIPE_TEST_SECRET_KEY=sk_test_fake    # any sk_test_... works here\n",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
