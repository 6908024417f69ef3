"""Checking a delivery's ``Stripe-Signature`` through stripe-python, then its JSON.

``stripe.WebhookSignature.verify_header`` does the HMAC for snapshot events, and
``StripeClient.parse_event_notification`` for thin ones; this module adds what they leave out:
a bound on the header's size and its number of signatures (checked before any HMAC), several
active secrets per endpoint, a timestamp too far in the future, bodies that are not UTF-8 or
are nested too deeply for ``json.loads``, and the endpoint's livemode.

Pure: bytes, a header and secrets in; an :class:`~flask_stripe_hooks.events.Event` (or
:class:`~flask_stripe_hooks.events.ThinEvent`) or :class:`Rejected` out. No app, no
database, no configured client.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

import stripe

from ..errors import NotAnEvent, Rejected
from ..events import Event, ThinEvent
from ..utils import mode_name

#: The longest ``Stripe-Signature`` header checked. Stripe's holds a time and one signature
#: per active secret (about 70 characters each, a ``v0`` one too in test mode): under 300.
MAX_SIGNATURE_HEADER = 2048
#: The most ``v1`` signatures checked in one header (Stripe sends one per active secret).
MAX_SIGNATURES = 8


def _timestamp(header: str) -> int:
    """The header's ``t=``, once its size is checked: a longer header, or one with more
    signatures, is :class:`Rejected` before any HMAC is computed."""
    if len(header) > MAX_SIGNATURE_HEADER:
        raise Rejected(f"Stripe-Signature header longer than {MAX_SIGNATURE_HEADER} characters")
    timestamp = None
    signatures = 0
    for item in header.split(","):
        key, _, value = item.partition("=")
        if key == "t" and timestamp is None:
            timestamp = value
        signatures += key == "v1"
    if signatures > MAX_SIGNATURES:
        raise Rejected(f"more than {MAX_SIGNATURES} v1 signatures in Stripe-Signature header")
    if timestamp is None:
        raise ValueError("no t=")
    return int(timestamp)


def check_timestamp(timestamp: int, tolerance: int, now: float | None = None) -> None:
    """Refuse a signature time outside ``tolerance`` seconds, in either direction
    (``verify_header`` checks only the past); ``0`` turns the check off."""
    if tolerance:
        now = time.time() if now is None else now
        if timestamp < now - tolerance:
            raise Rejected("timestamp outside the tolerance")
        if timestamp > now + tolerance:
            raise Rejected("timestamp in the future")


#: JSON nested deeper than this is refused. Stripe's objects nest about a dozen levels;
#: Python's recursion limit (``json.dumps`` when the event is stored, the admin's
#: pretty-printing) is a few hundred levels further down a call stack.
MAX_DEPTH = 64

#: A character no database column can hold: NUL (PostgreSQL refuses it in text and
#: JSONB) or half a surrogate pair (not Unicode; cannot be encoded as UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:40]} is out of range")
    return value


# NaN, Infinity and 1e400 are Python's extensions to JSON; no database stores them.
_decoder = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)


def _too_deep(payload: Any) -> bool:
    """Whether containers nest deeper than :data:`MAX_DEPTH`; one level at a time, containers
    only (a large invoice holds hundreds of them and thousands of scalars)."""
    if type(payload) is not dict and type(payload) is not list:
        return False
    level = [payload]
    for _ in range(MAX_DEPTH):
        level = [
            child
            for value in level
            for child in (value.values() if type(value) is dict else value)
            if type(child) is dict or type(child) is list
        ]
        if not level:
            return False
    return True


def parse_json(text: str) -> Any:
    """The body as JSON that can be stored as it is, or :class:`Rejected`.

    Beyond ``json.loads``: no ``NaN``/``Infinity``/overflowing numbers, no NUL or lone
    surrogate in any string (both only reach a string through a ``\\u`` escape), and at
    most :data:`MAX_DEPTH` levels (only counted when the body has that many brackets).
    """
    try:
        payload = _decoder.decode(text)
    except (ValueError, RecursionError):
        raise Rejected("body is not JSON") from None
    strings = "\\" in text and "\\u" in text  # a lone backslash is found far faster
    if not strings:
        if text.count("{") + text.count("[") > MAX_DEPTH and _too_deep(payload):
            raise Rejected(f"body is nested deeper than {MAX_DEPTH} levels")
        return payload
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if strings and _UNSTORABLE.search(value):
                raise Rejected("body has a NUL or a lone surrogate in a string")
            continue
        if isinstance(value, dict):
            children: Any = [*value, *value.values()] if strings else value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_DEPTH:
            raise Rejected(f"body is nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)
    return payload


T = TypeVar("T")


def verified_text(
    body: bytes,
    header: str,
    secrets: Sequence[str],
    check: Callable[[str, str], T],
    *,
    tolerance: int,
    now: float | None = None,
) -> tuple[str, T]:
    """The body as text once ``check(text, secret)`` passes for one of the secrets, and the
    signature's time is within ``tolerance``; else :class:`Rejected`.

    ``check`` is stripe-python's verification (it raises ``SignatureVerificationError`` for a
    secret that did not sign the body); what it returns is handed back.
    """
    try:
        timestamp = _timestamp(header)
    except ValueError:
        raise Rejected("malformed Stripe-Signature header") from None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("body is not UTF-8") from None
    if not secrets:
        raise Rejected("endpoint has no active signing secret")
    for secret in secrets:
        try:
            result = check(text, secret)
            break
        except stripe.SignatureVerificationError:
            continue
    else:
        raise Rejected("signature does not match")
    check_timestamp(timestamp, tolerance, now)
    return text, result


def check_livemode(event: Event, livemode: bool) -> None:
    if event.livemode != livemode:
        raise Rejected(
            f"{mode_name(event.livemode)}-mode event sent to a {mode_name(livemode)} endpoint"
        )


def verify(
    body: bytes,
    header: str,
    secrets: Sequence[str],
    *,
    tolerance: int,
    livemode: bool,
    now: float | None = None,
) -> Event:
    """Return the verified snapshot event, or raise :class:`Rejected` with the reason."""

    def check(text: str, secret: str) -> None:  # the time window is checked in both directions
        stripe.WebhookSignature.verify_header(text, header, secret, None)

    text, _ = verified_text(body, header, secrets, check, tolerance=tolerance, now=now)
    payload = parse_json(text)
    try:
        event = Event.from_payload(payload)
    except NotAnEvent as exc:
        raise Rejected(str(exc)) from None
    check_livemode(event, livemode)
    return event


@cache
def _parse_only_client() -> stripe.StripeClient:
    # parse_event_notification needs a client, though verifying and parsing send nothing:
    # this one is never used to call Stripe. Handlers that fetch get the endpoint's own
    # client, bound to the event by the pipeline.
    return stripe.StripeClient("sk_test_parse_only")


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
    :class:`~flask_stripe_hooks.events.ThinEvent` or raise :class:`Rejected`.

    ``account`` is the endpoint's account: the one its fetches go through."""
    client = _parse_only_client()

    def parse(text: str, secret: str) -> Any:
        try:  # tolerance=0: verified_text checks the time window, in both directions
            return client.parse_event_notification(text, header, secret, tolerance=0)
        except (ValueError, LookupError, TypeError, AttributeError, RecursionError) as exc:
            return exc  # signed with this secret, but not a thin event: the reason is below

    text, notification = verified_text(body, header, secrets, parse, tolerance=tolerance, now=now)
    payload = parse_json(text)  # the same rules as snapshot bodies: storable JSON only
    if isinstance(payload, dict) and payload.get("object") == "event":
        raise Rejected(
            "snapshot event sent to a thin endpoint; snapshot events need an endpoint whose"
            " payload style is snapshot"
        )
    try:  # each field stripe-python reads is checked here, so the reason names it
        event = ThinEvent.from_payload(payload, account)
    except NotAnEvent as exc:
        raise Rejected(str(exc)) from None
    if isinstance(notification, Exception):  # a shape the checks above do not know
        raise Rejected(f"stripe-python cannot read this thin event ({type(notification).__name__})")
    check_livemode(event, livemode)
    return event
