"""What handlers receive: a plain, immutable view of one Stripe event.

Not an ORM row (those expire at commit and cannot be read outside a session) and not a
``stripe.Event`` (building that tree costs more than the rest of the pipeline). Call
:meth:`Event.to_stripe` when you want stripe-python's object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

#: 9999-12-31 23:59:59 UTC, the last second a ``datetime`` holds.
_LAST_SECOND = 253402300799


class NotAnEvent(ValueError):
    """A JSON body that is not a Stripe event; the message says what is missing."""


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: str
    livemode: bool
    data: dict[str, Any]
    account: str = ""
    api_version: str = ""
    created: int | None = None
    request_id: str | None = None
    idempotency_key: str | None = None
    payload: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    #: ``True`` for a thin event (:class:`~flask_stripe_hooks.thin.ThinEvent`).
    thin: ClassVar[bool] = False

    @property
    def object(self) -> Any:
        """``data["object"]``: the resource the event is about."""
        return self.data.get("object")

    @property
    def previous_attributes(self) -> dict[str, Any]:
        return self.data.get("previous_attributes") or {}

    @property
    def created_at(self) -> datetime | None:
        if self.created is None:
            return None
        return datetime.fromtimestamp(self.created, timezone.utc)

    def to_stripe(self) -> Any:
        """The event as a ``stripe.Event`` (builds the full object tree; not free)."""
        import stripe

        return stripe.Event.construct_from(self.to_dict(), None)

    def to_dict(self) -> dict[str, Any]:
        """The event as Stripe sent it (rebuilt from the stored columns if need be)."""
        if self.payload:
            return self.payload
        request = None
        if self.request_id or self.idempotency_key:
            request = {"id": self.request_id, "idempotency_key": self.idempotency_key}
        out: dict[str, Any] = {
            "id": self.id,
            "object": "event",
            "api_version": self.api_version or None,
            "created": self.created,
            "data": self.data,
            "livemode": self.livemode,
            "type": self.type,
            "request": request,
        }
        if self.account:
            out["account"] = self.account
        return out

    @classmethod
    def from_payload(cls, payload: Any) -> Event:
        """Check that a parsed body is a snapshot event and wrap it."""
        if not isinstance(payload, dict):
            raise NotAnEvent("body is not a JSON object")
        if payload.get("object") == "v2.core.event":
            raise NotAnEvent(
                "thin event sent to a snapshot endpoint; thin events need an endpoint whose"
                " payload style is thin"
            )
        if payload.get("object") != "event":
            raise NotAnEvent('body is not a Stripe event (object is not "event")')
        event_id, event_type, livemode = identity(payload)
        data = payload.get("data")
        if not isinstance(data, dict):
            raise NotAnEvent("event has no data object")
        account = payload.get("account") or ""
        if not isinstance(account, str) or len(account) > 255:
            raise NotAnEvent("event has no valid account")
        api_version = payload.get("api_version") or ""
        if not isinstance(api_version, str) or len(api_version) > 64:
            raise NotAnEvent("event has no valid api_version")
        created = payload.get("created")
        if type(created) is not int or not 0 <= created <= _LAST_SECOND:
            created = None  # not a time a datetime (or a database) can hold
        request = payload.get("request")
        request_id = idempotency_key = None
        if isinstance(request, dict):
            request_id, idempotency_key = request.get("id"), request.get("idempotency_key")
        elif isinstance(request, str):  # API versions before 2017-05-25
            request_id = request
        return cls(
            id=event_id,
            type=event_type,
            livemode=livemode,
            data=data,
            account=account,
            api_version=api_version,
            created=created,
            request_id=_short(request_id),
            idempotency_key=_short(idempotency_key),
            payload=payload,
        )

    @classmethod
    def from_row(cls, row: Any, endpoint: Any = None) -> Event:
        """Rebuild the event from a ``stripe_hooks_event`` row (for re-processing).

        A thin event's row holds its notification: it becomes a ``ThinEvent`` that fetches
        through ``endpoint``'s account (an ``EndpointInfo`` or ``None``).
        """
        if row.data.get("object") == "v2.core.event":
            from .thin import ThinEvent

            return ThinEvent.from_row(row, endpoint)
        created = row.created
        if created is not None and created.tzinfo is None:
            created = created.replace(tzinfo=timezone.utc)
        return cls(
            id=row.id,
            type=row.type,
            livemode=row.livemode,
            data=row.data,
            account=row.account or "",
            api_version=row.api_version or "",
            created=int(created.timestamp()) if created is not None else None,
            request_id=row.request_id,
            idempotency_key=row.idempotency_key,
        )


def identity(payload: dict[str, Any]) -> tuple[str, str, bool]:
    """``(id, type, livemode)`` of a snapshot or thin payload, checked, or :class:`NotAnEvent`."""
    event_id, event_type = payload.get("id"), payload.get("type")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 255:
        raise NotAnEvent("event has no valid id")
    if not isinstance(event_type, str) or not event_type or len(event_type) > 255:
        raise NotAnEvent("event has no valid type")
    livemode = payload.get("livemode")
    if not isinstance(livemode, bool):
        raise NotAnEvent("event has no livemode")
    return event_id, event_type, livemode


def _short(value: Any) -> str | None:
    return value[:255] if isinstance(value, str) and value else None
