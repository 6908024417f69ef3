"""Thin events: the notifications Stripe's v2 event destinations send.

A thin payload (``"object": "v2.core.event"``) names what happened and the object it
happened to, without the data::

    {"id": "evt_test_65R...", "object": "v2.core.event",
     "type": "v1.billing.meter.error_report_triggered", "livemode": false,
     "created": "2026-01-31T10:00:00.000Z", "context": "acct_...",
     "related_object": {"id": "mtr_...", "type": "billing.meter",
                        "url": "/v1/billing/meters/mtr_..."}}

stripe-python verifies and parses it (``StripeClient.parse_event_notification``); the
pipeline then stores it and runs its handlers exactly as it does a snapshot event. Handlers
get a :class:`ThinEvent`, whose :meth:`~ThinEvent.fetch_event` and
:meth:`~ThinEvent.fetch_related_object` call Stripe through the endpoint's account and mode,
only when called.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, ClassVar

import stripe

from .events import Event, NotAnEvent, _short, identity
from .verification import Rejected, check_livemode, parse_json, verified_text

SNAPSHOT, THIN = "snapshot", "thin"
#: An endpoint's payload style (``WebhookEndpoint.payload``).
PAYLOAD_STYLES = (SNAPSHOT, THIN)
#: The ``object`` of a thin payload.
THIN_OBJECT = "v2.core.event"

_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")


def parse_created(value: Any) -> int | None:
    """``"2026-01-31T10:00:00.123Z"`` (v2 timestamps are RFC 3339) → Unix seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _ISO.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    day, time_, _, zone = match.groups()
    zone = "+00:00" if zone in (None, "Z") else zone
    if ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    try:
        return int(datetime.fromisoformat(f"{day}T{time_}{zone}").timestamp())
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class ThinEvent(Event):
    """A thin event as handlers get it: ``id``, ``type``, ``livemode``, ``created`` as for a
    snapshot event; ``data`` is the notification as Stripe sent it.

    Nothing is fetched unless asked: :meth:`fetch_event` (the full ``v2.core.event``, with
    its ``data``) and :meth:`fetch_related_object` (the object it is about, as it is *now*)
    call the Stripe API with the key of the endpoint's account and mode.
    """

    #: The endpoint's account (a name in ``STRIPE_HOOKS_ACCOUNTS``; ``""``: the default).
    client_account: str = ""
    _notification: Any = field(default=None, repr=False, compare=False)

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
    def context(self) -> str | None:
        """The account the event happened in (``acct_...``), for Connect and Accounts v2."""
        return self.data.get("context") or None

    @property
    def reason(self) -> dict[str, Any] | None:
        reason = self.data.get("reason")
        return reason if isinstance(reason, dict) else None

    def client(self) -> stripe.StripeClient:
        """The ``StripeClient`` of the endpoint's account and mode (needs an app context).

        Raises :class:`~flask_stripe_hooks.stripe_api.StripeAPIError` naming the setting
        to fill when no key is configured for them.
        """
        from .extension import get_state
        from .stripe_api import client_for

        return client_for(get_state(), account=self.client_account, livemode=self.livemode)

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
        """``GET /v2/core/events/{id}``: the full event, with its ``data`` and ``changes``."""
        return self.notification.fetch_event()

    def fetch_related_object(self) -> Any:
        """``GET`` the related object's URL (e.g. ``/v1/billing/meters/mtr_...``), or ``None``
        when the event has no related object."""
        if self.related_object is None:
            return None
        notification = self.notification
        if not hasattr(notification, "fetch_related_object"):
            # A type whose class declares no related object, sent with one anyway: fetch it
            # the way stripe-python does for types it does not know.
            from stripe.events import UnknownEventNotification

            notification = UnknownEventNotification(self.data, self.client())
        return notification.fetch_related_object()

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
        reason = payload.get("reason")
        request = reason.get("request") if isinstance(reason, dict) else None
        if not isinstance(request, dict):
            request = {}
        context = payload.get("context")
        return cls(
            id=event_id,
            type=event_type,
            livemode=livemode,
            data=payload,
            account=context[:255] if isinstance(context, str) else "",
            created=parse_created(payload.get("created")),
            request_id=_short(request.get("id")),
            idempotency_key=_short(request.get("idempotency_key")),
            payload=payload,
            client_account=client_account,
        )

    @classmethod
    def from_row(cls, row: Any, endpoint: Any = None) -> ThinEvent:
        """Rebuild it from its ``stripe_hooks_event`` row; fetches go through ``endpoint``'s
        account (the default account when the endpoint is gone)."""
        return cls.from_payload(row.data, endpoint.account if endpoint is not None else "")


# -- verifying -------------------------------------------------------------------------------


@cache
def _parse_only_client() -> stripe.StripeClient:
    # parse_event_notification needs a client, though verifying and parsing send nothing.
    # With no key configured the event is still accepted and stored; fetching its data
    # later says which key to set.
    return stripe.StripeClient("sk_test_parse_only")


def _parsing_client(account: str, livemode: bool) -> tuple[stripe.StripeClient, bool]:
    """The endpoint's client when its key is configured (``True``), else a parse-only one."""
    from .extension import get_state
    from .stripe_api import StripeAPIError, client_for

    try:
        return client_for(get_state(), account=account, livemode=livemode), True
    except StripeAPIError:
        return _parse_only_client(), False


def verify_thin(
    body: bytes,
    header: str,
    secrets: Sequence[str],
    *,
    tolerance: int,
    livemode: bool,
    account: str = "",
    now: float | None = None,
) -> ThinEvent:
    """Verify and parse a thin payload with stripe-python's
    ``StripeClient.parse_event_notification``, trying each active secret; return the
    :class:`ThinEvent` or raise :class:`~flask_stripe_hooks.verification.Rejected`."""
    client, bound = _parsing_client(account, livemode)

    def parse(text: str, secret: str) -> Any:
        try:  # tolerance=0: verified_text checks the time window, in both directions
            return client.parse_event_notification(text, header, secret, tolerance=0)
        except (ValueError, LookupError, TypeError, AttributeError, RecursionError):
            return None  # signed with this secret, but not a thin event: the reason is below

    text, notification = verified_text(body, header, secrets, parse, tolerance=tolerance, now=now)
    payload = parse_json(text)  # the same rules as snapshot bodies: storable JSON only
    if notification is None and isinstance(payload, dict) and payload.get("object") == "event":
        raise Rejected(
            "snapshot event sent to a thin endpoint; snapshot events need an endpoint whose"
            " payload style is snapshot"
        )
    try:
        if notification is None:
            raise NotAnEvent(f'body is not a Stripe thin event (object is not "{THIN_OBJECT}")')
        event = ThinEvent.from_payload(payload, account)
    except NotAnEvent as exc:
        raise Rejected(str(exc)) from None
    check_livemode(event, livemode)
    if bound:
        object.__setattr__(event, "_notification", notification)
    return event
