"""The fields of an event as Stripe sends them, checked one by one: its id, type and times,
the object it is about, and the fields of a thin notification that stripe-python reads. Each
check refuses what a column cannot hold with :class:`~flask_stripe_hooks.errors.NotAnEvent`
naming the field (the delivery is answered 400 with it), or keeps it untracked where the
event is usable without it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from .errors import NotAnEvent

#: The ``object`` of a thin payload.
THIN_OBJECT = "v2.core.event"
#: 9999-12-31 23:59:59 UTC, the last second a ``datetime`` holds.
_LAST_SECOND = 253402300799
#: The longest event id, type, account or request id the database holds (``String(255)``).
MAX_ID = 255


def object_id_of(data: Any) -> str | None:
    """The id of the Stripe object an event is about, from its ``data`` as stored:
    ``data.object.id``, or a thin event's ``related_object.id`` (its data is the
    notification); ``None`` when there is none. The ``object_id`` column holds it only when
    it fits (:data:`MAX_ID`): see :func:`indexed_object_id`."""
    if not isinstance(data, dict):
        return None
    holder = data.get("related_object") if data.get("object") == THIN_OBJECT else data.get("object")
    value = holder.get("id") if isinstance(holder, dict) else None
    return value if isinstance(value, str) and value else None


def indexed_object_id(object_id: str | None) -> str | None:
    """An object id as the indexed ``object_id`` column holds it: ``None`` for one longer than
    :data:`MAX_ID` (no Stripe id comes near it; such an event is processed, untracked)."""
    return object_id if object_id is not None and len(object_id) <= MAX_ID else None


def identity(payload: dict[str, Any]) -> tuple[str, str, bool]:
    """``(id, type, livemode)`` of a snapshot or thin payload, checked, or :class:`NotAnEvent`."""
    event_id = fitting(payload, "id", MAX_ID)
    if not event_id:
        raise NotAnEvent("event has no valid id")
    event_type = fitting(payload, "type", MAX_ID)
    if not event_type:
        raise NotAnEvent("event has no valid type")
    livemode = payload.get("livemode")
    if not isinstance(livemode, bool):
        raise NotAnEvent("event has no livemode")
    return event_id, event_type, livemode


def fitting(payload: dict[str, Any], key: str, longest: int) -> str:
    """``payload[key]``, a string of at most ``longest`` characters, or ``""`` when it is
    empty or absent; else :class:`NotAnEvent` (it says where the event belongs: never cut)."""
    value = payload.get(key) or ""
    if not isinstance(value, str):
        raise NotAnEvent(f"event has no valid {key}")
    if len(value) > longest:
        raise NotAnEvent(f"event {key} is longer than {longest} characters")
    return value


def short(value: Any) -> str | None:
    """A request id or idempotency key as its column holds it: the first :data:`MAX_ID`
    characters. Stripe's are far shorter; a longer one is cut, not refused (the event is
    usable without it), and the whole value stays in the raw body (and in a thin event's
    stored notification)."""
    return value[:MAX_ID] if isinstance(value, str) and value else None


def unix_time(value: Any) -> int | None:
    """Whole Unix seconds between 1970 and 9999 (what a ``datetime``, and the database, can
    hold), else ``None``: the event is stored without its ``created``."""
    return value if type(value) is int and 0 <= value <= _LAST_SECOND else None


_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")


def parse_created(value: Any) -> int | None:
    """``"2026-01-31T10:00:00.123Z"`` (v2 timestamps are RFC 3339) → Unix seconds; ``None``
    for anything else, and for a time before 1970 or after 9999 (see :func:`unix_time`)."""
    match = _ISO.match(value) if isinstance(value, str) else None
    if match is None:
        return unix_time(value)
    day, time_, _, zone = match.groups()
    zone = "+00:00" if zone in (None, "Z") else zone
    if ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    try:
        return unix_time(int(datetime.fromisoformat(f"{day}T{time_}{zone}").timestamp()))
    except (ValueError, OverflowError):  # a day that does not exist, or out of range
        return None


def _needs_related_object(event_type: str) -> bool:
    """Whether stripe-python's notification class of the type declares a related object
    (found as its ``parse_event_notification`` finds it: that one class is imported)."""
    from stripe.events import UnknownEventNotification
    from stripe.events._event_classes import get_v2_event_notification_class

    cls = get_v2_event_notification_class(event_type)
    known = cls is not UnknownEventNotification  # whose related object is optional
    return known and "related_object" in getattr(cls, "__annotations__", {})


def check_thin_fields(payload: dict[str, Any], event_type: str) -> None:
    """The fields of a thin notification that stripe-python reads, each of the shape it
    reads; else :class:`NotAnEvent` naming the field (the delivery is answered 400 with it)."""
    if "created" not in payload:
        raise NotAnEvent("thin event has no created time")
    context = payload.get("context")
    if context is not None and not isinstance(context, str):
        raise NotAnEvent("thin event's context is not an account id")
    if context is not None:
        fitting(payload, "context", MAX_ID)  # an over-long one says so
    reason = payload.get("reason")
    if reason:
        if not isinstance(reason, dict) or not isinstance(reason.get("type"), str):
            raise NotAnEvent("thin event's reason has no type")
        request = reason.get("request")
        if reason["type"] == "request" and not (
            isinstance(request, dict) and "id" in request and "idempotency_key" in request
        ):
            raise NotAnEvent("thin event's reason has no request id and idempotency_key")
    related = payload.get("related_object")
    if related is None and _needs_related_object(event_type):
        raise NotAnEvent(f"thin event has no related_object (a {event_type} event has one)")
    if related is not None:
        if not isinstance(related, dict):
            raise NotAnEvent("thin event's related_object is not an object")
        for key in ("id", "type", "url"):
            value = related.get(key)
            if not isinstance(value, str) or not value or len(value) > 2048:
                raise NotAnEvent(f"thin event's related_object has no {key}")
        if not related["url"].startswith("/"):
            raise NotAnEvent("thin event's related_object url is not a path of Stripe's API")
    twin = payload.get("snapshot_event")
    if twin is not None and (
        not isinstance(twin, str) or not twin.startswith("evt_") or len(twin) > 255
    ):
        raise NotAnEvent("thin event's snapshot_event is not an event id")
