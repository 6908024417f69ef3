"""Checking a delivery's ``Stripe-Signature`` through stripe-python, then its JSON.

``stripe.WebhookSignature.verify_header`` does the HMAC; this module adds what it leaves out:
several active secrets per endpoint, a timestamp too far in the future, bodies that are not
UTF-8 or are nested too deeply for ``json.loads``, and the endpoint's livemode.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import stripe

from .events import Event, NotAnEvent


class Rejected(Exception):
    """A delivery that must not be processed; ``reason`` is short and safe to send back."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _timestamp(header: str) -> int:
    for item in header.split(","):
        key, _, value = item.partition("=")
        if key == "t":
            return int(value)
    raise ValueError("no t=")


def verify(
    body: bytes,
    header: str,
    secrets: Sequence[str],
    *,
    tolerance: int,
    livemode: bool,
    now: float | None = None,
) -> Event:
    """Return the verified event, or raise :class:`Rejected` with the reason."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("body is not UTF-8") from None
    if not secrets:
        raise Rejected("endpoint has no active signing secret")

    try:
        timestamp = _timestamp(header)
    except ValueError:
        raise Rejected("malformed Stripe-Signature header") from None
    for secret in secrets:
        try:  # tolerance=None: the time window is checked below, in both directions
            stripe.WebhookSignature.verify_header(text, header, secret, None)
            break
        except stripe.SignatureVerificationError:
            continue
    else:
        raise Rejected("signature does not match")
    if tolerance:
        now = time.time() if now is None else now
        if timestamp < now - tolerance:
            raise Rejected("timestamp outside the tolerance")
        if timestamp > now + tolerance:
            raise Rejected("timestamp in the future")

    try:
        payload: Any = json.loads(text)
    except (ValueError, RecursionError):
        raise Rejected("body is not JSON") from None
    try:
        event = Event.from_payload(payload)
    except NotAnEvent as exc:
        raise Rejected(str(exc)) from None
    if event.livemode != livemode:
        mode = "live" if event.livemode else "test"
        raise Rejected(f"{mode}-mode event sent to a {'live' if livemode else 'test'} endpoint")
    return event
