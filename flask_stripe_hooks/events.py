"""What handlers receive: a plain, immutable view of one Stripe event.

Not an ORM row (those expire at commit and cannot be read outside a session) and not a
``stripe.Event`` (building that tree costs more than the rest of the pipeline). Call
:meth:`Event.to_stripe` when you want stripe-python's object.

Two shapes: a snapshot event (:class:`Event`, ``"object": "event"``, with its ``data``) and a
thin event (:class:`ThinEvent`, ``"object": "v2.core.event"``), the notification Stripe's v2
event destinations send, which names what happened and the object it happened to::

    {"id": "evt_test_65R...", "object": "v2.core.event",
     "type": "v1.billing.meter.error_report_triggered", "livemode": false,
     "created": "2026-01-31T10:00:00.000Z", "context": "acct_...",
     "related_object": {"id": "mtr_...", "type": "billing.meter",
                        "url": "/v1/billing/meters/mtr_..."}}

These are values: they import nothing above them. Whatever reaches Stripe's API
(:meth:`Event.fetch_object`, a thin event's :meth:`~ThinEvent.fetch_related_object`, any call
through :meth:`Event.client`) goes through the client the pipeline binds to the event, built
only when a handler asks for it: the key of the endpoint's account, acting in the account the
event happened in (``Stripe-Account: <account>`` for a Connect event, ``Stripe-Context:
<context>`` for a thin event or an Organization's).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar
from urllib.parse import quote

from .errors import NotAnEvent
from .event_fields import MAX_ID as MAX_ID
from .event_fields import THIN_OBJECT as THIN_OBJECT
from .event_fields import (
    check_thin_fields,
    fitting,
    identity,
    object_id_of,
    parse_created,
    short,
    unix_time,
)
from .utils import aware

SNAPSHOT, THIN = "snapshot", "thin"
#: An endpoint's payload style (``WebhookEndpoint.payload``).
PAYLOAD_STYLES = (SNAPSHOT, THIN)

#: A Stripe account id (``--connected-account``).
ACCOUNT_ID = re.compile(r"acct_[A-Za-z0-9]{1,250}")
#: What an event's ``account`` holds: an account id, or a thin event's context under an
#: Organization (``acct_.../acct_...``). The lists filter by it.
ACCOUNT_PATH = re.compile(r"acct_[A-Za-z0-9]+(?:/acct_[A-Za-z0-9]+)*")


@dataclass(frozen=True, slots=True)
class Event:
    """A snapshot event as handlers get it: ``event.type``, ``event.data["object"]`` (also
    ``event.object``), ``event.livemode``, ``event.account`` (``""`` unless Connect).

    Frozen and detached from the database: it stays readable in ``on_commit`` callbacks and
    queued jobs. Fields are what Stripe sent; ``payload`` is the whole body.
    """

    id: str
    type: str
    livemode: bool
    data: dict[str, Any]
    account: str = ""
    #: The account path the event happened in (``acct_...``, or ``acct_.../acct_...`` under an
    #: Organization), as Stripe sends it from API version 2025-04-30; ``""`` without one.
    context: str = ""
    api_version: str = ""
    created: int | None = None
    request_id: str | None = None
    idempotency_key: str | None = None
    payload: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: Builds the ``StripeClient`` of the event (see :meth:`client`); bound by the pipeline.
    _client: Callable[[], Any] | None = field(default=None, repr=False, compare=False)
    _built: Any = field(default=None, repr=False, compare=False)
    #: The id of an event about the same object with a strictly later ``created`` that was
    #: processed before this one arrived (see :attr:`is_stale`); set by the pipeline.
    newer_event_id: str | None = field(default=None, compare=False)
    #: Received during the shadow phase of a move to thin events: the handlers' writes are
    #: rolled back and their ``on_commit`` callbacks never run; set by the pipeline.
    shadow: bool = field(default=False, compare=False)
    _fetched: Any = field(default=None, repr=False, compare=False)

    #: ``True`` for a thin event (:class:`ThinEvent`).
    thin: ClassVar[bool] = False

    def client(self) -> Any:
        """The ``stripe.StripeClient`` of this event: the key of the endpoint's account and
        mode, acting in the account the event happened in. Every request it makes for a
        Connect event carries ``Stripe-Account: <event.account>``; for an event with a
        ``context`` and no ``account`` (a thin event), ``Stripe-Context: <event.context>``;
        for a platform event, neither. With an organization key (``sk_org_...``) it is
        always ``Stripe-Context`` (see :func:`~flask_stripe_hooks.stripe_api.client_as`).

        Built on first use, so an event whose handlers never call Stripe needs no key.
        Raises :class:`~flask_stripe_hooks.stripe_api.StripeAPIError` naming the setting to
        fill when no key is configured for them.
        """
        if self._built is None:
            if self._client is None:
                raise RuntimeError(
                    f"Event {self.id} is not bound to an app: only events handed to handlers"
                    " (or bound with bind_client) can reach Stripe's API."
                )
            object.__setattr__(self, "_built", self._client())
        return self._built

    def bind_client(self, factory: Callable[[], Any]) -> None:
        """Set what :meth:`client` calls (the pipeline does; tests may too)."""
        object.__setattr__(self, "_client", factory)
        object.__setattr__(self, "_built", None)

    @property
    def connected_account(self) -> str:
        """The connected account whose ``Stripe-Account`` the event's requests carry:
        ``account`` for a snapshot event, ``""`` for a thin one (its ``context`` says it)."""
        return self.account

    @property
    def object_id(self) -> str | None:
        """The id of the Stripe object the event is about (``data.object.id``; a thin event's
        ``related_object.id``)."""
        return object_id_of(self.data)

    @property
    def is_stale(self) -> bool:
        """An event about the same object with a strictly later ``created`` was processed
        before this one: its data is older than what the app has applied. Events created in
        the same second are never stale (either could be the newer)."""
        return self.newer_event_id is not None

    def fetch_object(self) -> Any:
        """The object the event is about as it is *now* on Stripe (``GET /v1/<objects>/<id>``
        through :meth:`client`: as the connected account for a Connect event, with
        stripe-python's retries).

        Fetched once, then reused by every handler of this delivery. An object deleted on
        Stripe raises stripe-python's ``InvalidRequestError`` (404), as the API answers."""
        if self._fetched is None:
            import stripe
            from stripe._object_classes import get_object_class

            obj = self.object if isinstance(self.object, dict) else {}
            if self.object_id is None or not isinstance(obj.get("object"), str):
                raise ValueError(f"Event {self.id} names no object to fetch.")
            class_url = getattr(get_object_class("V1", obj["object"]), "class_url", None)
            if class_url is None:  # not an API resource of its own
                raise ValueError(f"A {obj['object']} cannot be fetched on its own.")
            url = class_url()
            client = self.client()
            answer = client.raw_request("get", f"{url}/{quote(self.object_id, safe='')}")
            fetched = client.deserialize(answer, api_mode="V1")
            if not isinstance(fetched, stripe.StripeObject):
                raise TypeError(f"{url} answered no object")
            object.__setattr__(self, "_fetched", fetched)
        return self._fetched

    @property
    def object(self) -> Any:
        """``data["object"]``: the resource the event is about."""
        return self.data.get("object")

    @property
    def previous_attributes(self) -> dict[str, Any]:
        """The changed fields' values before the event (``data.previous_attributes``)."""
        return self.data.get("previous_attributes") or {}

    @property
    def changes(self) -> dict[str, Any] | None:
        """What changed on the object: ``{"before": {...}, "after": {...}}`` with the changed
        fields only, as a thin event's ``changes`` says it; for a snapshot event, made from
        ``previous_attributes`` and the object. ``None`` when the event names no change (a
        ``*.created`` event, say)."""
        before = self.previous_attributes
        obj = self.object if isinstance(self.object, dict) else {}
        if not before:
            return None
        return {"before": dict(before), "after": {key: obj.get(key) for key in before}}

    @property
    def snapshot_event(self) -> str | None:
        """The id of the snapshot event this thin event is the twin of (``None`` here: a
        snapshot event is its own; see :attr:`ThinEvent.snapshot_event`)."""
        return None

    @property
    def created_at(self) -> datetime | None:
        """``created`` as an aware UTC ``datetime``."""
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
        if self.context:
            out["context"] = self.context
        return out

    @classmethod
    def from_payload(cls, payload: Any) -> Event:
        """Check that a parsed body is a snapshot event and wrap it."""
        if not isinstance(payload, dict):
            raise NotAnEvent("body is not a JSON object")
        if payload.get("object") == THIN_OBJECT:
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
        account = fitting(payload, "account", MAX_ID)
        context = fitting(payload, "context", MAX_ID)
        api_version = fitting(payload, "api_version", 64)
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
            context=context,
            api_version=api_version,
            created=unix_time(payload.get("created")),
            request_id=short(request_id),
            idempotency_key=short(idempotency_key),
            payload=payload,
        )

    @classmethod
    def from_row(cls, row: Any, endpoint: Any = None) -> Event:
        """Rebuild the event from a ``stripe_hooks_event`` row (for re-processing).

        A thin event's row holds its notification: it becomes a ``ThinEvent`` that fetches
        through ``endpoint``'s account (an ``EndpointInfo`` or ``None``).
        """
        if row.data.get("object") == THIN_OBJECT:
            return ThinEvent.from_row(row, endpoint)
        created = None if row.created is None else aware(row.created)
        return cls(
            id=row.id,
            type=row.type,
            livemode=row.livemode,
            data=row.data,
            account=row.account or "",
            context=row.context or "",
            api_version=row.api_version or "",
            created=int(created.timestamp()) if created is not None else None,
            request_id=row.request_id,
            idempotency_key=row.idempotency_key,
        )


@dataclass(frozen=True, slots=True)
class ThinEvent(Event):
    """A thin event as handlers get it: ``id``, ``type``, ``livemode``, ``created`` as for a
    snapshot event; ``data`` is the notification as Stripe sent it.

    Nothing is fetched unless asked: :meth:`fetch_event` (the full ``v2.core.event``, with
    its ``data``) and :meth:`fetch_related_object` (the object it is about, as it is *now*)
    call the Stripe API with the key of the endpoint's account and mode, in the event's
    ``context`` (``Stripe-Context``, as :meth:`client`'s every request). ``account`` and
    ``context`` are both the ``context`` Stripe sent (``""`` without one).
    """

    #: The endpoint's account (a name in ``STRIPE_HOOKS_ACCOUNTS``; ``""``: the default).
    client_account: str = ""
    _notification: Any = field(default=None, repr=False, compare=False)
    _full: Any = field(default=None, repr=False, compare=False)

    thin: ClassVar[bool] = True

    @property
    def object(self) -> Any:
        """Always ``None``: a thin event carries no object; call :meth:`fetch_related_object`."""
        return None

    @property
    def related_object(self) -> dict[str, Any] | None:
        """``{"id", "type", "url"}`` of the object the event is about, if it has one."""
        related = self.data.get("related_object")
        return related if isinstance(related, dict) else None

    @property
    def connected_account(self) -> str:
        """Always ``""``: a thin event's requests carry its ``context`` (``Stripe-Context``)."""
        return ""

    @property
    def reason(self) -> dict[str, Any] | None:
        reason = self.data.get("reason")
        return reason if isinstance(reason, dict) else None

    @property
    def notification(self) -> Any:
        """stripe-python's ``EventNotification`` of this type (e.g.
        ``V1BillingMeterErrorReportTriggeredEventNotification``), bound to :meth:`client`."""
        if self._notification is None:
            notification = self.client().parse_event_notification_without_verification(
                json.dumps(self.data)
            )
            object.__setattr__(self, "_notification", notification)
        return self._notification

    def fetch_event(self) -> Any:
        """``GET /v2/core/events/{id}``: the full event, with its ``data`` and ``changes``.
        Fetched once, then reused by every handler of this delivery."""
        if self._full is None:
            object.__setattr__(self, "_full", self.notification.fetch_event())
        return self._full

    @property
    def snapshot_event(self) -> str | None:
        """The id of the snapshot event this thin event is the twin of (``v1.customer.created``
        of ``customer.created``): the notification's ``snapshot_event``, else the fetched
        event's. Both are one business event: only the first to arrive runs its handlers."""
        value = self.data.get("snapshot_event")
        if value is None and self._full is not None:
            value = getattr(self._full, "snapshot_event", None)
        valid = isinstance(value, str) and value.startswith("evt_") and value != self.id
        return value if valid else None

    @property
    def changes(self) -> dict[str, Any] | None:
        """What changed on the related object: ``{"before": {...}, "after": {...}}``, the
        changed fields only (the thin counterpart of ``previous_attributes``), or ``None``
        when Stripe gives none. Read from the stored event when it holds them (events
        fetched by ``fetch-missed``), else from :meth:`fetch_event` (one API call)."""
        if "changes" in self.data:
            changes = self.data["changes"]
        else:
            changes = getattr(self.fetch_event(), "changes", None)
        if changes is not None and hasattr(changes, "to_dict"):
            changes = changes.to_dict()
        return changes if isinstance(changes, dict) and changes else None

    @property
    def previous_attributes(self) -> dict[str, Any]:
        """The changed fields' values before the event: ``changes["before"]``, as a snapshot
        event's ``data.previous_attributes`` gives them."""
        return dict((self.changes or {}).get("before") or {})

    def fetch_related_object(self) -> Any:
        """``GET`` the related object's URL (e.g. ``/v1/billing/meters/mtr_...``) as it is now,
        or ``None`` when the event has no related object. Fetched once, then reused."""
        if self.related_object is None:
            return None
        if self._fetched is None:
            notification = self.notification
            if not hasattr(notification, "fetch_related_object"):
                # A type whose class declares no related object, sent with one anyway: fetch
                # it the way stripe-python does for types it does not know.
                from stripe.events import UnknownEventNotification

                notification = UnknownEventNotification(self.data, self.client())
            object.__setattr__(self, "_fetched", notification.fetch_related_object())
        return self._fetched

    def fetch_object(self) -> Any:
        """The same as :meth:`fetch_related_object`, under the name snapshot events use."""
        return self.fetch_related_object()

    def to_stripe(self) -> Any:
        """stripe-python's ``EventNotification`` for this event (see :attr:`notification`)."""
        return self.notification

    def to_dict(self) -> dict[str, Any]:
        """The notification as Stripe sent it."""
        return dict(self.data)

    @classmethod
    def from_payload(cls, payload: Any, client_account: str = "") -> ThinEvent:
        """Check a parsed thin payload (already verified by stripe-python) and wrap it."""
        if not isinstance(payload, dict) or payload.get("object") != THIN_OBJECT:
            raise NotAnEvent(f'body is not a Stripe thin event (object is not "{THIN_OBJECT}")')
        event_id, event_type, livemode = identity(payload)
        check_thin_fields(payload, event_type)
        reason = payload.get("reason")
        request = reason.get("request") if isinstance(reason, dict) else None
        if not isinstance(request, dict):
            request = {}
        context = fitting(payload, "context", MAX_ID)
        return cls(
            id=event_id,
            type=event_type,
            livemode=livemode,
            data=payload,
            account=context,
            context=context,
            created=parse_created(payload.get("created")),
            request_id=short(request.get("id")),
            idempotency_key=short(request.get("idempotency_key")),
            payload=payload,
            client_account=client_account,
        )

    @classmethod
    def from_row(cls, row: Any, endpoint: Any = None) -> ThinEvent:
        """Rebuild it from its ``stripe_hooks_event`` row; fetches go through ``endpoint``'s
        account (the default account when the endpoint is gone)."""
        return cls.from_payload(row.data, endpoint.account if endpoint is not None else "")
