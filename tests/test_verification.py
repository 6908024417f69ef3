"""The verification module on its own: bytes, a ``Stripe-Signature`` header and secrets in; an
event or a rejection with its reason out. No app, no database, no client."""

from __future__ import annotations

import json
import time

import pytest
from flask_stripe_hooks.errors import Rejected
from flask_stripe_hooks.events import Event, ThinEvent
from flask_stripe_hooks.pipeline.verification import MAX_DEPTH, verify, verify_thin
from flask_stripe_hooks.testing import build_event, build_thin_event, new_secret, sign_payload

SECRET = new_secret()
NOW = 1_750_000_000


def signed(payload, secret=SECRET, at=NOW):
    body, header = sign_payload(payload, secret, timestamp=at)
    return body.encode(), header


def check(body, header, secrets=(SECRET,), *, livemode=False, now=NOW):
    return verify(body, header, list(secrets), tolerance=300, livemode=livemode, now=now)


def reason(call, *args, **kwargs) -> str:
    with pytest.raises(Rejected) as caught:
        call(*args, **kwargs)
    return caught.value.reason


def test_a_signed_event_comes_back_parsed():
    payload = build_event("customer.created", {"email": "a@example.com"}, created=NOW)
    event = check(*signed(payload))
    assert isinstance(event, Event)
    assert (event.id, event.type, event.livemode) == (payload["id"], "customer.created", False)
    assert event.data == payload["data"]
    assert event.object_id == payload["data"]["object"]["id"]


def test_any_active_secret_verifies_and_others_do_not():
    old, new = new_secret(), new_secret()
    payload = build_event("invoice.paid")
    assert check(*signed(payload, secret=old), secrets=(new, old)).id == payload["id"]
    assert reason(check, *signed(payload, secret=new_secret()), secrets=(new, old)) == (
        "signature does not match"
    )
    assert reason(check, *signed(payload), secrets=()) == "endpoint has no active signing secret"


def test_the_body_must_be_the_one_signed():
    body, header = signed(build_event("customer.created"))
    assert reason(check, body.replace(b'"customer', b'"Customer', 1), header) == (
        "signature does not match"
    )


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (NOW - 301, "timestamp outside the tolerance"),
        (NOW + 301, "timestamp in the future"),
    ],
)
def test_the_time_window_holds_both_ways(at, expected):
    body, header = signed(build_event("customer.created"), at=at)
    assert reason(check, body, header) == expected
    assert check(*signed(build_event("customer.created"), at=NOW - 299)).type == "customer.created"


@pytest.mark.parametrize("header", ["", "v1=abc", "t=soon,v1=abc", "garbage"])
def test_a_malformed_header_is_refused(header):
    body, _ = signed(build_event("customer.created"))
    assert reason(check, body, header) == "malformed Stripe-Signature header"


def test_the_endpoints_mode_must_match():
    body, header = signed(build_event("customer.created", livemode=True))
    assert reason(check, body, header) == "live-mode event sent to a test endpoint"
    assert check(body, header, livemode=True).livemode is True


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\xff\xfe not utf-8", "body is not UTF-8"),
        (b"{not json", "body is not JSON"),
        (b'{"id": 1e400}', "body is not JSON"),
        (b'{"id": NaN}', "body is not JSON"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH}"),
        (b"[" * 100_000 + b"]" * 100_000, "body is not JSON"),
        (b'{"id": "evt_\\u0000"}', "body has a NUL or a lone surrogate in a string"),
    ],
)
def test_bodies_that_cannot_be_stored_are_refused(body, expected):
    if body.startswith(b"\xff"):
        header = sign_payload("x", SECRET, timestamp=NOW)[1]  # decoding fails first
    else:
        header = sign_payload(body.decode(), SECRET, timestamp=NOW)[1]
    assert expected in reason(check, body, header)


def test_signed_json_that_is_no_event_is_refused_with_what_is_missing():
    assert "type" in reason(check, *signed({"id": "evt_1", "object": "event"}))
    assert reason(check, *signed("[1, 2, 3]")) == "body is not a JSON object"


def test_a_thin_notification_verifies_as_a_thin_event():
    payload = build_thin_event("v1.billing.meter.error_report_triggered", created=NOW)
    body, header = signed(payload)
    event = verify_thin(body, header, [SECRET], tolerance=300, livemode=False, now=NOW)
    assert isinstance(event, ThinEvent)
    assert (event.id, event.type) == (payload["id"], payload["type"])


def test_a_snapshot_event_at_a_thin_endpoint_says_so():
    body, header = signed(build_event("customer.created"))
    text = reason(verify_thin, body, header, [SECRET], tolerance=300, livemode=False, now=NOW)
    assert text.startswith("snapshot event sent to a thin endpoint")


def test_verification_needs_no_clock_of_the_app():
    """``now`` defaults to the real clock: a payload signed now verifies without one."""
    payload = build_event("customer.created")
    body, header = sign_payload(json.dumps(payload), SECRET, timestamp=int(time.time()))
    assert (
        verify(body.encode(), header, [SECRET], tolerance=300, livemode=False).id == payload["id"]
    )
