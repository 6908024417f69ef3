"""A small local Stripe API for tests: ``/v1/webhook_endpoints`` in Stripe's wire format.

Requests arrive as stripe-python sends them to api.stripe.com: form-encoded bodies
(``enabled_events[0]=...``, ``metadata[key]=value``), ``Authorization: Bearer sk_...``,
``Stripe-Version``. Answers are Stripe's JSON objects, and errors Stripe's error JSON
``{"error": {"type", "message", "param", "code"}}`` with Stripe's status codes. Every
request is recorded so a test can assert what stripe-python actually sent.

    with StripeStub(keys={"sk_test_good"}) as stub:
        app.config["STRIPE_HOOKS_API_BASE"] = stub.url
        ...
        assert stub.requests[-1].form["enabled_events"] == ["customer.created"]
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flask_stripe_hooks import event_types

#: Stripe's per-account limit on webhook endpoints (per mode).
MAX_ENDPOINTS = 16
_PART = re.compile(r"\[([^\]]*)\]")


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding back into nested values: ``a[0]=x`` → ``{"a": ["x"]}``,
    ``m[k]=v`` → ``{"m": {"k": "v"}}``."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        base = key.split("[", 1)[0]
        parts = [base, *_PART.findall(key[len(base) :])]
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt = None if last else parts[i + 1]
            empty: Any = [] if nxt is not None and (nxt.isdigit() or nxt == "") else {}
            if isinstance(node, list):
                index = int(part) if part.isdigit() else len(node)
                while len(node) <= index:
                    node.append(None)
                if last:
                    node[index] = value
                else:
                    if node[index] is None:
                        node[index] = empty
                    node = node[index]
            else:
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, empty)
    return out


@dataclass
class Recorded:
    """One request as it reached the stub."""

    method: str
    path: str
    query: dict[str, Any]
    headers: dict[str, str]
    pairs: list[tuple[str, str]]
    form: dict[str, Any]
    #: The body as sent (JSON for ``/v2/...`` requests).
    body: str = ""

    @property
    def api_key(self) -> str:
        return self.headers.get("Authorization", "").removeprefix("Bearer ")

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class StripeError(Exception):
    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {
                "type": "invalid_request_error" if status < 500 else "api_error",
                "message": message,
                **({"param": param} if param else {}),
                **({"code": code} if code else {}),
            }
        }


@dataclass
class StripeStub:
    """Start with ``with StripeStub(...) as stub``; ``stub.url`` is the api_base."""

    keys: set[str] = field(default_factory=lambda: {"sk_test_stub", "sk_live_stub"})
    requests: list[Recorded] = field(default_factory=list)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Events served by ``GET /v1/events`` (add with :meth:`add_event`).
    events: list[dict[str, Any]] = field(default_factory=list)
    faults: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    #: Every signing secret handed out, by endpoint id (Stripe shows each only once).
    secrets: dict[str, str] = field(default_factory=dict)
    #: The id the next created endpoint gets (default: a random ``we_...``).
    next_id: str | None = None
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- control ------------------------------------------------------------------------

    def __enter__(self) -> StripeStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub._serve(self)

            do_POST = do_DELETE = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.endpoints.clear()
            self.events.clear()
            self.faults.clear()
            self.secrets.clear()
            self.next_id = None

    def fail_next(self, status: int, error: dict[str, Any]) -> None:
        """Answer the next request with this HTTP status and ``{"error": error}``."""
        self.faults.append((status, {"error": error}))

    def calls(self, method: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if method is None or r.method == method]

    def add_endpoint(self, livemode: bool = False, **fields: Any) -> dict[str, Any]:
        """An endpoint made elsewhere (the Dashboard), as Stripe stores it."""
        endpoint = self._new(livemode, {"url": "https://elsewhere.example/hook", **fields})
        endpoint.pop("secret")
        return endpoint

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
        handler.send_header("Stripe-Version", record.headers.get("Stripe-Version", "stub"))
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(self, request: Recorded) -> tuple[int, dict[str, Any]]:
        if self.faults:
            return self.faults.pop(0)
        key = request.api_key
        if key not in self.keys:
            shown = key[:8] + "*" * 8 + key[-4:] if len(key) > 12 else "****"
            raise StripeError(401, f"Invalid API Key provided: {shown}")
        livemode = key.startswith(("sk_live_", "rk_live_"))
        path, method = request.path.rstrip("/"), request.method
        if path == "/v1/webhook_endpoints":
            if method == "POST":
                return 200, self._create(livemode, request.form)
            if method == "GET":
                return 200, self._list(livemode, request.query)
        if path == "/v1/events" and method == "GET":
            return 200, self._list_events(livemode, request.query)
        match = re.fullmatch(r"/v1/webhook_endpoints/([^/]+)", path)
        if match:
            endpoint = self.endpoints.get(match.group(1))
            if endpoint is None or endpoint["livemode"] != livemode:
                raise StripeError(
                    404,
                    f"No such webhook endpoint: '{match.group(1)}'",
                    param="id",
                    code="resource_missing",
                )
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
            mode = "live" if livemode else "test"
            raise StripeError(400, f"You have reached the maximum of 16 {mode} webhook endpoints.")
        endpoint = {
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

    def add_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """An event Stripe keeps (as ``build_event`` makes them), listed by ``/v1/events``."""
        with self._lock:
            self.events.append(event)
        return event

    def _list_events(self, livemode: bool, query: dict[str, Any]) -> dict[str, Any]:
        """``GET /v1/events``: newest first; ``created[gte|gt|lte|lt]``, ``type`` (a name,
        or ``prefix.*``), ``types[]``, ``limit``, ``starting_after``."""
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
            return not wanted_types or event["type"] in wanted_types

        found = sorted(
            (e for e in self.events if keep(e)), key=lambda e: (e["created"], e["id"]), reverse=True
        )
        after = query.get("starting_after")
        if after:
            ids = [e["id"] for e in found]
            found = found[ids.index(after) + 1 :] if after in ids else []
        limit = int(query.get("limit") or 10)
        if not 1 <= limit <= 100:
            raise StripeError(
                400, "Invalid integer: limit must be between 1 and 100.", param="limit"
            )
        return {
            "object": "list",
            "data": found[:limit],
            "has_more": len(found) > limit,
            "url": "/v1/events",
        }

    def _list(self, livemode: bool, query: dict[str, Any]) -> dict[str, Any]:
        mine = sorted(
            (e for e in self.endpoints.values() if e["livemode"] == livemode),
            key=lambda e: (e["created"], e["id"]),
            reverse=True,
        )
        after = query.get("starting_after")
        if after:
            ids = [e["id"] for e in mine]
            mine = mine[ids.index(after) + 1 :] if after in ids else []
        limit = int(query.get("limit") or 10)
        return {
            "object": "list",
            "data": mine[:limit],
            "has_more": len(mine) > limit,
            "url": "/v1/webhook_endpoints",
        }
