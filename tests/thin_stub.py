"""The local Stripe stub, plus the v2 API that thin events use.

``/v2/core/event_destinations`` (create, retrieve, update, enable, disable, delete),
``/v2/core/events/{id}`` (the full thin event) and ``GET`` of any object added with
:meth:`ThinStripeStub.add_object` (a thin event's related object, e.g.
``/v1/billing/meters/mtr_...``). v2 requests carry JSON bodies, as stripe-python sends them
to api.stripe.com; everything else is the v1 stub of ``stripe_stub.py``.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from flask_stripe_hooks import event_types

from stripe_stub import Recorded, StripeError, StripeStub

_DESTINATION = re.compile(r"/v2/core/event_destinations/([^/]+)(?:/(enable|disable))?")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


@dataclass
class ThinStripeStub(StripeStub):
    #: Event destinations by id, as Stripe keeps them (no secret, no URL).
    destinations: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The URL of each destination (Stripe shows it only when asked with ``include``).
    destination_urls: dict[str, str] = field(default_factory=dict)
    #: Full thin events served by ``GET /v2/core/events/{id}``.
    thin_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Any object served by ``GET {path}`` (related objects).
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.destinations.clear()
            self.destination_urls.clear()
            self.thin_events.clear()
            self.objects.clear()

    def add_object(self, url: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.objects[url] = obj
        return obj

    def add_thin_event(self, notification: dict[str, Any], **data: Any) -> dict[str, Any]:
        """The full ``v2.core.event`` behind a notification, as ``/v2/core/events`` gives it."""
        event = {**notification, "data": data or None, "changes": None}
        with self._lock:
            self.thin_events[notification["id"]] = event
        return event

    def _answer(self, request: Recorded) -> tuple[int, dict[str, Any]]:
        path = request.path.rstrip("/")
        if not (path.startswith("/v2/") or path in self.objects):
            return super()._answer(request)
        if self.faults:
            return self.faults.pop(0)
        if request.api_key not in self.keys:
            raise StripeError(401, "Invalid API Key provided.")
        livemode = request.api_key.startswith(("sk_live_", "rk_live_"))
        method = request.method
        if path in self.objects and method == "GET":
            return 200, self.objects[path]
        if path == "/v2/core/event_destinations" and method == "POST":
            return 200, self._create_destination(livemode, request.json or {})
        match = re.fullmatch(r"/v2/core/events/([^/]+)", path)
        if match and method == "GET":
            event = self.thin_events.get(match.group(1))
            if event is None or event["livemode"] != livemode:
                raise StripeError(404, f"No such event: '{match.group(1)}'", code="not_found")
            return 200, event
        match = _DESTINATION.fullmatch(path)
        if match:
            destination = self.destinations.get(match.group(1))
            if destination is None or destination["livemode"] != livemode:
                raise StripeError(
                    404, f"No such event destination: '{match.group(1)}'", code="not_found"
                )
            action = match.group(2)
            if method == "POST" and action:
                destination["status"] = "enabled" if action == "enable" else "disabled"
                destination["status_details"] = (
                    None if action == "enable" else {"disabled": {"reason": "user"}}
                )
                destination["updated"] = _now()
                return 200, destination
            if method == "GET" and not action:
                return 200, destination
            if method == "POST" and not action:
                return 200, self._update_destination(destination, request.json or {})
            if method == "DELETE" and not action:
                del self.destinations[destination["id"]]
                return 200, {"id": destination["id"], "object": "v2.core.event_destination"}
        raise StripeError(404, f"Unrecognized request URL ({method}: {request.path}).")

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
            "created": _now(),
            "updated": _now(),
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
        secret = "whsec_" + secrets.token_hex(16)
        self.destinations[destination["id"]] = destination
        self.destination_urls[destination["id"]] = url
        self.secrets[destination["id"]] = secret
        include = body.get("include") or []
        answer = {**destination, "webhook_endpoint": dict(destination["webhook_endpoint"])}
        if "webhook_endpoint.signing_secret" in include:
            answer["webhook_endpoint"]["signing_secret"] = secret
        if "webhook_endpoint.url" in include:
            answer["webhook_endpoint"]["url"] = url
        return answer

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
        destination["updated"] = _now()
        return destination
