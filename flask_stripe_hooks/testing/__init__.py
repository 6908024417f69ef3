"""Helpers for tests (yours and ours): build an event, sign it, deliver it.

::

    from flask_stripe_hooks.testing import build_event, deliver

    def test_trial_ending(app, client, endpoint):
        response = deliver(client, endpoint, build_event("customer.subscription.trial_will_end"))
        assert response.status_code == 200

Signatures are made by stripe-python (``stripe.WebhookSignature.generate_signature_header``),
exactly as Stripe makes them.
"""

from __future__ import annotations

import json
import secrets as _secrets
import time
import urllib.error
import urllib.request
import uuid
from typing import TYPE_CHECKING, Any

import stripe

from .. import event_types
from ..crypto import seal, unseal
from ..errors import InvalidTestEvent
from ..event_types import object_name
from ..state import get_state

if TYPE_CHECKING:
    from .fake_stripe import FakeStripe as FakeStripe  # a fake Stripe API, for your tests


def __getattr__(name: str) -> Any:
    """``FakeStripe``, imported when asked for: ``python -m ...testing.fake_stripe`` then
    runs the module once, as the server."""
    if name == "FakeStripe":
        from .fake_stripe import FakeStripe

        return FakeStripe
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Id prefixes of the objects tests meet most; others get one made from the object name.
_ID_PREFIXES = {
    "customer": "cus",
    "subscription": "sub",
    "invoice": "in",
    "invoiceitem": "ii",
    "payment_intent": "pi",
    "payment_method": "pm",
    "setup_intent": "seti",
    "charge": "ch",
    "refund": "re",
    "dispute": "dp",
    "payout": "po",
    "price": "price",
    "product": "prod",
    "plan": "plan",
    "coupon": "coupon",
    "checkout.session": "cs_test",
    "account": "acct",
    "source": "src",
    "discount": "di",
    "billing.meter": "mtr",
    "event_destination": "ed",
}


def random_id(prefix: str) -> str:
    return f"{prefix}_{_secrets.token_hex(12)}"


def new_secret() -> str:
    """A fresh signing secret in Stripe's format."""
    return "whsec_" + _secrets.token_urlsafe(32)


def build_event(
    event_type: str,
    data: dict[str, Any] | None = None,
    *,
    livemode: bool = False,
    account: str | None = None,
    event_id: str | None = None,
    created: int | None = None,
    api_version: str | None = None,
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A snapshot event of ``event_type`` shaped as Stripe sends it.

    ``data`` is merged into ``data.object``, whose ``id`` and ``object`` are made from the
    type (``customer.subscription.created`` → a ``subscription`` with a ``sub_`` id).
    """
    now = int(time.time()) if created is None else created
    obj_name = object_name(event_type)
    prefix = _ID_PREFIXES.get(obj_name, obj_name.replace(".", "_")[:8])
    obj: dict[str, Any] = {
        "id": random_id(prefix),
        "object": obj_name,
        "created": now,
        "livemode": livemode,
        "metadata": {},
    }
    obj.update(data or {})
    event_data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        event_data["previous_attributes"] = previous_attributes
    event: dict[str, Any] = {
        "id": event_id or random_id("evt"),
        "object": "event",
        "api_version": api_version or stripe.api_version,
        "created": now,
        "data": event_data,
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": random_id("req"), "idempotency_key": str(uuid.uuid4())},
        "type": event_type,
    }
    if account:
        event["account"] = account
    return event


def related_object_for(event_type: str, object_id: str | None = None) -> dict[str, Any] | None:
    """A thin event's ``related_object`` (``{"id", "type", "url"}``) made from its type, or
    ``None`` for a type whose notification class in stripe-python has none.

    ``v1.billing.meter.error_report_triggered`` → a ``billing.meter`` at
    ``/v1/billing/meters/mtr_...``. The URL is made by the usual plural rule; pass
    ``related_object=`` to :func:`build_thin_event` where a resource is named otherwise.
    """
    from ..event_types import thin_notification_classes

    cls = thin_notification_classes().get(event_type)
    if cls is not None and "related_object" not in getattr(cls, "__annotations__", {}):
        return None
    version, _, rest = event_type.partition(".")
    name = object_name(rest) if version == "v1" else ".".join(event_type.split(".")[:-1])
    last = name.rsplit(".", 1)[-1]
    if object_id is None:
        prefix = _ID_PREFIXES.get(name) or _ID_PREFIXES.get(last) or last[:8]
        object_id = random_id(prefix)
    plural = last[:-1] + "ies" if last.endswith("y") else last + "s"
    path = "/".join([*name.split(".")[:-1], plural])
    if version == "v1":
        path = "v1/" + path
    return {"id": object_id, "type": name, "url": f"/{path}/{object_id}"}


def build_thin_event(
    event_type: str,
    *,
    related_object: dict[str, Any] | None | bool = True,
    livemode: bool = False,
    context: str | None = None,
    event_id: str | None = None,
    created: int | None = None,
    reason: bool = True,
    snapshot_event: str | None = None,
) -> dict[str, Any]:
    """A thin event notification (``"object": "v2.core.event"``), as an event destination
    sends it.

    ``related_object``: ``True`` makes one from the type (see :func:`related_object_for`),
    a dict is used as is, ``False``/``None`` leaves it out. ``context`` is the account the
    event happened in (``acct_...``). ``snapshot_event``: the id of the snapshot event this
    one is the thin twin of (see :func:`build_thin_twin`).
    """
    now = int(time.time()) if created is None else created
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))
    event: dict[str, Any] = {
        "id": event_id or random_id("evt_live" if livemode else "evt_test"),
        "object": "v2.core.event",
        "type": event_type,
        "livemode": livemode,
        "created": stamp,
    }
    if context:
        event["context"] = context
    if related_object is True:
        related_object = related_object_for(event_type)
    if isinstance(related_object, dict):
        event["related_object"] = related_object
    if reason:
        event["reason"] = {
            "type": "request",
            "request": {"id": random_id("req"), "idempotency_key": str(uuid.uuid4())},
        }
    if snapshot_event is not None:
        event["snapshot_event"] = snapshot_event
    return event


def build_thin_twin(snapshot: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """The thin twin of a snapshot event (as :func:`build_event` makes them): ``v1.`` + its
    type, about the same object, created at the same time, with ``snapshot_event`` naming
    it. ``kwargs`` go to :func:`build_thin_event`."""
    event_type = event_types.thin_twin_type(snapshot["type"])
    if event_type is None:
        raise InvalidTestEvent(f"{snapshot['type']!r} has no thin twin in stripe-python.")
    obj = snapshot["data"]["object"]
    options: dict[str, Any] = {
        "related_object": related_object_for(event_type, obj.get("id")),
        "livemode": snapshot["livemode"],
        "context": snapshot.get("account"),
        "created": snapshot["created"],
        "snapshot_event": snapshot["id"],
    }
    return build_thin_event(event_type, **{**options, **kwargs})


def event_for(endpoint: Any, event_type: str, data: str | None = None) -> dict[str, Any]:
    """The event ``flask stripe-hooks send-test-event`` sends to ``endpoint``.

    The endpoint must be enabled, ``event_type`` a type (or prefix) of its payload style
    that the endpoint is enabled for (Stripe sends it no other), and ``data`` JSON text of
    an object, merged into ``data.object`` (for a thin endpoint: into the notification). A
    Connect endpoint's event names a made-up connected account.
    Raises :class:`InvalidTestEvent` with a message naming the fix.
    """
    if not event_types.is_known(event_type) or event_type == "*":
        raise InvalidTestEvent(
            event_types.unknown_type_message(event_type, fallback="; see 'event-types'.")
        )
    try:
        extra = json.loads(data) if data else None
    except ValueError as exc:
        raise InvalidTestEvent(f"--data is not valid JSON: {exc}") from None
    if extra is not None and not isinstance(extra, dict):
        raise InvalidTestEvent("--data must be a JSON object.")
    if not endpoint.enabled:
        raise InvalidTestEvent(f"Endpoint {endpoint.uuid} is disabled.")
    thin = bool(endpoint.thin)
    if event_types.is_thin_name(event_type) != thin:
        style, other = ("thin", "snapshot") if thin else ("snapshot", "thin")
        raise InvalidTestEvent(
            f"{event_type!r} is a {other} event type, and endpoint {endpoint.uuid} receives"
            f" {style} events; see 'flask stripe-hooks event-types"
            + (" --thin'." if thin else "'.")
        )
    enabled = list(endpoint.enabled_events or ["*"])
    if "*" not in enabled and not any(event_types.in_prefix(event_type, n) for n in enabled):
        shown = ", ".join(enabled) if len(enabled) <= 5 else f"{len(enabled)} other types"
        raise InvalidTestEvent(
            f"Endpoint {endpoint.uuid} is not enabled for {event_type!r} (it receives"
            f" {shown}): Stripe would not send it. Enable it with 'flask stripe-hooks"
            f" update-endpoint {endpoint.uuid} --events ...' (every type it should receive),"
            " or choose another endpoint."
        )
    if not thin:  # a Connect endpoint's events come from a connected account (a made-up one)
        account = random_id("acct") if getattr(endpoint, "connect", False) else None
        return build_event(event_type, extra, livemode=endpoint.livemode, account=account)
    if event_type not in event_types.thin_event_types():
        raise InvalidTestEvent(
            event_types.unknown_type_message(
                event_type, thin=True, fallback="; see 'event-types --thin'."
            )
        )
    return {**build_thin_event(event_type, livemode=endpoint.livemode), **(extra or {})}


def sign_payload(
    payload: str | bytes | dict[str, Any], secret: str, timestamp: int | None = None
) -> tuple[str, str]:
    """Return ``(body, Stripe-Signature header)`` for a payload, signed by stripe-python."""
    if isinstance(payload, dict):
        body = json.dumps(payload)
    elif isinstance(payload, bytes):
        body = payload.decode("utf-8")
    else:
        body = payload
    header = stripe.WebhookSignature.generate_signature_header(
        body, secret, timestamp=int(time.time()) if timestamp is None else timestamp
    )
    return body, header


def post_event(
    url: str, event: dict[str, Any] | str | bytes, secret: str, *, timeout: float = 30
) -> tuple[int, str]:
    """Sign ``event`` and POST it to a running server at ``url`` (a whole webhook URL).

    Returns ``(status, response text)``: an error status is an answer, not an exception.
    A server that cannot be reached raises ``ConnectionError`` naming ``url``.
    """
    body, header = sign_payload(event, secret)
    headers = {"Stripe-Signature": header, "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        with exc:  # it holds the answer's connection
            return exc.code, exc.read().decode("utf-8", "replace")
    except OSError as exc:  # URLError, a refused connection, a timeout
        raise ConnectionError(f"Could not reach {url}: {exc}") from None


def send_event(
    app: Any,
    endpoint_uuid: uuid.UUID | str,
    event: dict[str, Any],
    secret: str,
    *,
    url: str | None = None,
) -> tuple[int, str]:
    """Sign ``event`` and deliver it to an endpoint of ``app``; ``(status, response text)``.

    With ``url``, over HTTP to the server running there (its base URL, or a whole webhook
    URL; see :func:`post_event`). Otherwise in-process, in a fresh app context: its own
    session, so a rollback in a handler touches nothing of the caller's.
    """
    path = webhook_path(app, endpoint_uuid)
    if url:
        return post_event(url if "/webhook/" in url else url.rstrip("/") + path, event, secret)
    with app.app_context():
        response = deliver(app.test_client(), endpoint_uuid, event, secret=secret)
        return response.status_code, response.get_data(as_text=True)


def webhook_path(app: Any, endpoint_uuid: uuid.UUID | str) -> str:
    """The path Stripe posts to for an endpoint of ``app``."""
    return get_state(app).webhook_path(endpoint_uuid)


def endpoint_parts(endpoint: Any, secret: str | None) -> tuple[str, str]:
    """``(uuid, secret)`` of a ``WebhookEndpoint`` row (or a uuid and ``secret=``)."""
    if isinstance(endpoint, (str, uuid.UUID)):
        if secret is None:
            raise TypeError("Pass secret= when the endpoint is given by its uuid.")
        return str(endpoint), secret
    if secret is None:
        stored = endpoint.secrets
        if not stored:
            raise ValueError(f"{endpoint!r} has no signing secret.")
        secret = stored[-1] if isinstance(stored[-1], str) else unseal(stored[-1]["secret"])
    return str(endpoint.uuid), secret


def deliver(
    client: Any,
    endpoint: Any,
    event: dict[str, Any] | str | bytes,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """Sign ``event`` with the endpoint's newest secret and POST it with a test client.

    ``endpoint`` is a ``WebhookEndpoint`` (or its uuid, with ``secret=``). Returns the
    test client's response.
    """
    endpoint_uuid, secret = endpoint_parts(endpoint, secret)
    body, header = sign_payload(event, secret, timestamp)
    all_headers = {"Stripe-Signature": header, "Content-Type": "application/json"}
    all_headers.update(headers or {})
    return client.post(
        webhook_path(client.application, endpoint_uuid), data=body, headers=all_headers
    )


def create_endpoint(
    db: Any,
    *,
    secret: str | None = None,
    livemode: bool = False,
    **fields: Any,
) -> Any:
    """Store a ``WebhookEndpoint`` with one signing secret (a new one by default) and commit.

    Call it inside an app context. Returns the row; its uuid and secrets stay readable
    (encrypted with ``STRIPE_HOOKS_ENCRYPTION_KEY`` when it is set).
    """
    from flask import current_app

    from ..models import WebhookEndpoint

    secret = secret or new_secret()
    state = current_app.extensions.get("stripe_hooks")  # none: an app without the extension
    endpoint = WebhookEndpoint(
        secrets=[{"secret": seal(secret, state) if state else secret, "expires_at": None}],
        livemode=livemode,
        **fields,
    )
    db.session.add(endpoint)
    db.session.commit()
    db.session.refresh(endpoint)
    db.session.expunge(endpoint)
    return endpoint
