"""The events of :class:`~flask_stripe_hooks.testing.FakeStripe`: ``GET /v1/events`` (list
and retrieve) as Stripe answers it, and ``POST /_fake/events``, the fake's own way in (not
Stripe's) for an event Stripe has: what ``fetch-missed`` finds when the fake runs as a
server."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from .. import event_types
from ._wire import Recorded, StripeError, not_found, page

#: The path of the fake's own ``POST`` that adds an event.
EVENTS_PATH = "/_fake/events"


class Events:
    """The events part of the fake, mixed into ``FakeStripe`` (whose fields and lock it
    uses)."""

    _lock: threading.Lock
    events: list[dict[str, Any]]

    def add_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """An event Stripe keeps (as ``build_event`` makes them), served by ``/v1/events``
        to the account it belongs to (its ``account``; the platform without one).

        ``pending_webhooks`` decides ``delivery_success``: 0 means every delivery succeeded.
        """
        with self._lock:
            self.events.append(event)
        return event

    def _post_event(self, request: Recorded) -> dict[str, Any]:
        """``POST /_fake/events`` (answered holding the lock) with a JSON body: a whole event
        (with ``"object": "event"``), or ``{"type": ..., "data": {...}, "livemode": false,
        "account": "acct_...", "created": <unix time>, "delivered": false}``, built like
        ``build_event`` (``data`` merged into ``data.object``; ``delivered`` false:
        ``delivery_success=false`` finds it). No API key is needed: it is the fake's, not
        Stripe's."""
        from . import build_event  # the testing package's: it imports this module

        try:
            body = json.loads(request.body or "{}")
        except ValueError:
            raise StripeError(400, 'The body must be JSON: an event, or {"type": ...}.') from None
        if not isinstance(body, dict):
            raise StripeError(400, "The body must be a JSON object.")
        if body.get("object") == "event":
            for key in ("id", "type", "created", "livemode", "data"):
                if key not in body:
                    raise StripeError(400, f"Missing required param: {key}.", param=key)
            self.events.append(body)
            return body
        name = body.get("type")
        if not isinstance(name, str) or name not in event_types.all_event_types():
            raise StripeError(
                400, f"Invalid type: {name!r} is not a Stripe event type.", param="type"
            )
        data, created = body.get("data"), body.get("created")
        if data is not None and not isinstance(data, dict):
            raise StripeError(400, "Invalid data: must be an object.", param="data")
        if created is not None and not isinstance(created, int):
            raise StripeError(400, "Invalid created: must be a unix time.", param="created")
        event = build_event(
            name,
            data,
            livemode=bool(body.get("livemode")),
            account=body.get("account") or None,
            created=created,
        )
        event["pending_webhooks"] = 0 if body.get("delivered") else 1
        self.events.append(event)
        return event

    def _answer_events(
        self, request: Recorded, livemode: bool, acting: str
    ) -> dict[str, Any] | None:
        """``GET /v1/events`` and ``GET /v1/events/{id}`` in the account ``acting``;
        ``None``: another path."""
        path = request.path.rstrip("/")
        if request.method != "GET":
            return None
        if path == "/v1/events":
            return self._list_events(livemode, request.query, acting)
        match = re.fullmatch(r"/v1/events/([^/]+)", path)
        if match is None:
            return None
        for event in self.events:
            if event["id"] == match.group(1) and event["livemode"] == livemode:
                if (event.get("account") or "") != acting:
                    break
                return event
        raise not_found("event", match.group(1))

    def _list_events(self, livemode: bool, query: dict[str, Any], acting: str) -> dict[str, Any]:
        """``GET /v1/events`` of the account ``acting`` (``""``: the platform): newest first;
        ``created[gte|gt|lte|lt]``, ``type`` (a name, or ``prefix.*``), ``types[]``,
        ``delivery_success``, ``limit``, ``starting_after``."""
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
            if event["livemode"] != livemode or (event.get("account") or "") != acting:
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

        return page((e for e in self.events if keep(e)), query, "/v1/events")
