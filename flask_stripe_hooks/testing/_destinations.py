"""The v2 part of :class:`~flask_stripe_hooks.testing.fake_stripe.FakeStripe`: event
destinations (create, retrieve, update, enable, disable, delete) and ``/v2/core/events``."""

from __future__ import annotations

import re
import secrets
from typing import Any

from .. import event_types
from . import _v2_lists
from ._wire import Recorded, StripeError, not_found, now

_DESTINATION = re.compile(r"/v2/core/event_destinations/([^/]+)(?:/(enable|disable))?")


class Destinations:
    """The v2 API, mixed into ``FakeStripe`` (whose fields and lock it uses)."""

    destinations: dict[str, dict[str, Any]]
    destination_urls: dict[str, str]
    thin_events: dict[str, dict[str, Any]]
    secrets: dict[str, str]
    owners: dict[str, str]
    _pages: _v2_lists.Pages

    @staticmethod
    def _check_url(url: str) -> str:
        raise NotImplementedError

    def _answer_v2(
        self, request: Recorded, livemode: bool, path: str, acting: str
    ) -> tuple[int, dict[str, Any]]:
        method = request.method
        if path == "/v2/core/event_destinations" and method == "POST":
            return 200, self._create_destination(livemode, request.json or {})
        if method == "GET" and path == "/v2/core/events":  # the acting account's own
            mine = (e for i, e in self.thin_events.items() if self.owners.get(i, "") == acting)
            return 200, _v2_lists.list_events(mine, livemode, request.query, self._pages)
        if method == "GET" and path == "/v2/core/event_destinations":
            destinations = self.destinations.values()
            found = _v2_lists.list_destinations(
                destinations, livemode, request.query, self._pages, self._shown
            )
            return 200, found
        match = re.fullmatch(r"/v2/core/events/([^/]+)", path)
        if match and method == "GET":
            event = self.thin_events.get(match.group(1))
            owner = self.owners.get(match.group(1), "")
            if event is None or event["livemode"] != livemode or owner != acting:
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
