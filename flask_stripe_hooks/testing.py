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
import uuid
from typing import Any

import stripe

from .event_types import object_name

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


def webhook_path(app: Any, endpoint_uuid: uuid.UUID | str) -> str:
    """The path Stripe posts to for an endpoint of ``app``."""
    from .extension import get_state

    return f"{get_state(app).url_prefix}/webhook/{endpoint_uuid}/"


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
        secret = stored[-1] if isinstance(stored[-1], str) else stored[-1]["secret"]
    return str(endpoint.uuid), secret  # type: ignore[return-value]


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

    Call it inside an app context. Returns the row; its uuid and secrets stay readable.
    """
    from .models import WebhookEndpoint

    endpoint = WebhookEndpoint(
        secrets=[{"secret": secret or new_secret(), "expires_at": None}],
        livemode=livemode,
        **fields,
    )
    db.session.add(endpoint)
    db.session.commit()
    db.session.refresh(endpoint)
    db.session.expunge(endpoint)
    return endpoint
