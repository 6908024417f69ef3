"""Replay: a captured valid delivery (its exact body and Stripe-Signature) sent again.

Within the tolerance a replay is a duplicate: 200, and the handlers do not run again.
After it, the replay is refused with 400 whatever is done to the header to make it look
fresh; so is a timestamp too far in the future. The clock is shifted by replacing the
``time`` module that :mod:`flask_stripe_hooks.pipeline.verification` reads, so the edges are exact;
one test waits in real time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import stripe
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery, WebhookEndpoint
from flask_stripe_hooks.pipeline import process_stored, verification
from flask_stripe_hooks.testing import build_event, create_endpoint, new_secret, sign_payload

from support.helpers import count, handled, on_sqlite, record, rows

TOLERANCE = 300


class Clock:
    """Stands in for the ``time`` module in verification.py: ``time()`` is what we say."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(time.time())
    monkeypatch.setattr(verification, "time", clock)
    return clock


@pytest.fixture
def recorder(app, hooks):
    @hooks.on("*")
    def every(event, **kwargs):
        record(app, event.id, event.type)


def post(client: Any, endpoint: Any, body: str, header: str) -> Any:
    count("replay cases")
    return client.post(
        f"/stripe/webhook/{endpoint.uuid}/",
        data=body,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


def capture(secret: str, at: int, event_type: str = "invoice.paid") -> tuple[str, str, str]:
    """A delivery as Stripe sent it at ``at``: (event id, body, header)."""
    event = build_event(event_type, created=at)
    body, header = sign_payload(event, secret, at)
    return event["id"], body, header


def outcomes(app: Any) -> list[tuple[str, bool]]:
    return [(d.outcome, d.valid) for d in rows(app, WebhookDelivery)]


def test_replay_within_the_tolerance_is_a_duplicate(app, client, endpoint, secret, recorder, clock):
    captured_at = int(clock.now)
    event_id, body, header = capture(secret, captured_at)
    response = post(client, endpoint, body, header)
    assert response.status_code == 200 and response.text.strip() == "processed"
    for seconds in (1, 60, TOLERANCE - 1, TOLERANCE):  # replayed later, still in the window
        clock.now = captured_at + seconds
        response = post(client, endpoint, body, header)
        assert response.status_code == 200 and response.text.strip() == "duplicate"
    assert handled(app) == [(event_id, "invoice.paid")]
    (stored,) = rows(app, StripeEvent)
    assert stored.status == "processed" and stored.attempts == 1
    assert outcomes(app) == [("processed", True)] + [("duplicate", True)] * 4


# Attempts to pass off a captured delivery as fresh once its time is past: the clock is
# moved to just after the tolerance, ``now`` is the time of the replay.
FRESHENED: dict[str, Callable[[str, str, int, int, str], tuple[str, str]]] = {
    "as captured": lambda body, header, t, now, secret: (body, header),
    "t set to now": lambda body, header, t, now, secret: (
        body,
        header.replace(f"t={t}", f"t={now}"),
    ),
    "t=now put first": lambda body, header, t, now, secret: (body, f"t={now}," + header),
    "t=now put last": lambda body, header, t, now, secret: (body, header + f",t={now}"),
    "v1 repeated": lambda body, header, t, now, secret: (
        body,
        header + "," + header.split(",")[1],
    ),
    "t padded with zeros": lambda body, header, t, now, secret: (
        body,
        header.replace(f"t={t}", f"t=000{t}"),
    ),
    "t with a plus sign": lambda body, header, t, now, secret: (
        body,
        header.replace(f"t={t}", f"t=+{t}"),
    ),
    "t with spaces": lambda body, header, t, now, secret: (
        body,
        header.replace(f"t={t}", f"t= {t} "),
    ),
    "t as a float": lambda body, header, t, now, secret: (
        body,
        header.replace(f"t={t}", f"t={now}.0"),
    ),
    "body re-serialized": lambda body, header, t, now, secret: (
        json.dumps(json.loads(body), separators=(",", ":")),
        header,
    ),
    "body re-signed with a guessed secret": lambda body, header, t, now, secret: (
        body,
        stripe.WebhookSignature.generate_signature_header(body, new_secret(), timestamp=now),
    ),
    "v0 of the new time added": lambda body, header, t, now, secret: (
        body,
        f"t={now},v0={header.split('v1=')[1]},{header.split(',')[1]}",
    ),
}


@pytest.mark.parametrize("how", FRESHENED)
def test_replay_after_the_tolerance_is_400(
    app, client, endpoint, secret, recorder, clock, how: str
):
    captured_at = int(clock.now)
    event_id, body, header = capture(secret, captured_at)
    assert post(client, endpoint, body, header).status_code == 200
    clock.now = captured_at + TOLERANCE + 1
    body2, header2 = FRESHENED[how](body, header, captured_at, int(clock.now), secret)
    response = post(client, endpoint, body2, header2)
    assert response.status_code == 400, (how, response.text)
    assert response.text.strip() in (
        "timestamp outside the tolerance",
        "signature does not match",
        "malformed Stripe-Signature header",
    )
    # A fresh copy of the same event is a duplicate: the handlers ran once in all.
    fresh_body, fresh_header = sign_payload(body, secret, int(clock.now))
    assert post(client, endpoint, fresh_body, fresh_header).text.strip() == "duplicate"
    assert handled(app) == [(event_id, "invoice.paid")]
    assert outcomes(app) == [("processed", True), ("rejected", False), ("duplicate", True)]


def test_replay_of_a_new_event_after_the_tolerance_stores_nothing(
    app, client, endpoint, secret, recorder, clock
):
    """A delivery captured by someone else (never received here) replayed late."""
    _, body, header = capture(secret, int(clock.now) - TOLERANCE - 1)
    response = post(client, endpoint, body, header)
    assert response.status_code == 400
    assert response.text.strip() == "timestamp outside the tolerance"
    assert handled(app) == [] and rows(app, StripeEvent) == []
    assert outcomes(app) == [("rejected", False)]


@pytest.mark.parametrize(
    "offset, status",
    [
        (-TOLERANCE - 1, 400),
        (-TOLERANCE, 200),
        (TOLERANCE, 200),
        (TOLERANCE + 1, 400),
        (10**6, 400),
    ],
    ids=["past-edge+1", "past-edge", "future-edge", "future-edge+1", "far-future"],
)
def test_the_window_is_exact_both_ways(
    app, client, endpoint, secret, recorder, clock, offset: int, status: int
):
    clock.now = float(int(clock.now))
    event_id, body, header = capture(secret, int(clock.now) + offset)
    response = post(client, endpoint, body, header)
    assert response.status_code == status, response.text
    if status == 400:
        reason = "timestamp in the future" if offset > 0 else "timestamp outside the tolerance"
        assert response.text.strip() == reason
        assert handled(app) == []
    else:
        assert handled(app) == [(event_id, "invoice.paid")]


def test_future_timestamp_is_400_and_stores_nothing(app, client, endpoint, secret, recorder, clock):
    """Stripe never stamps a delivery ahead: one an hour ahead is a forgery or a broken
    clock. stripe-python's ``verify_header`` alone would accept it."""
    event_id, body, header = capture(secret, int(clock.now) + 3600)
    assert stripe.WebhookSignature.verify_header(body, header, secret, TOLERANCE)
    response = post(client, endpoint, body, header)
    assert response.status_code == 400 and response.text.strip() == "timestamp in the future"
    assert handled(app) == [] and rows(app, StripeEvent) == []
    assert outcomes(app) == [("rejected", False)]


def test_per_endpoint_tolerance_and_zero_turns_the_window_off(
    app, db, client, secret, recorder, clock
):
    with app.app_context():
        strict = create_endpoint(db, secret=secret, tolerance=10)
        open_ = create_endpoint(db, secret=secret, tolerance=0)
    now = int(clock.now)
    _, body, header = capture(secret, now - 11)
    assert post(client, strict, body, header).status_code == 400
    # tolerance 0: no time check at all (documented); a replay is still only a duplicate.
    event_id, body, header = capture(secret, now - 10**6)
    assert post(client, open_, body, header).text.strip() == "processed"
    assert post(client, open_, body, header).text.strip() == "duplicate"
    assert handled(app) == [(event_id, "invoice.paid")]


@on_sqlite
def test_replay_in_real_time(app, db, client, secret, recorder):
    """No clock tricks: an endpoint with a 3-second window, a replay 4.5 seconds later."""
    with app.app_context():
        endpoint = create_endpoint(db, secret=secret, tolerance=3)
        endpoint_uuid = endpoint.uuid
    event_id, body, header = capture(secret, int(time.time()))
    assert post(client, endpoint, body, header).text.strip() == "processed"
    assert post(client, endpoint, body, header).text.strip() == "duplicate"
    time.sleep(4.5)
    response = post(client, endpoint, body, header)
    assert response.status_code == 400
    assert response.text.strip() == "timestamp outside the tolerance"
    assert handled(app) == [(event_id, "invoice.paid")]
    (stored_endpoint,) = rows(app, WebhookEndpoint, WebhookEndpoint.uuid == endpoint_uuid)
    assert stored_endpoint.tolerance == 3


def test_replay_in_queue_mode_never_runs_handlers_twice(app_factory, hooks, secret, clock):
    """Queue mode: a replay of a pending event is queued again (its message may be lost),
    the worker's lock makes that harmless; once processed, a replay is a duplicate."""
    queued: list[str] = []
    app = app_factory(STRIPE_HOOKS_EVENT_CALLBACK=queued.append)
    ran: list[str] = []

    @hooks.on("invoice.paid")
    def paid(event, **kwargs):
        ran.append(event.id)

    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"], secret=secret)
    client = app.test_client()
    event_id, body, header = capture(secret, int(clock.now))
    assert post(client, endpoint, body, header).text.strip() == "queued"
    assert post(client, endpoint, body, header).text.strip() == "queued"
    assert queued == [event_id, event_id]
    state = app.extensions["stripe_hooks"]
    with app.app_context():
        results = [process_stored(state, i).outcome for i in queued]
    assert results == ["processed", "duplicate"]
    assert post(client, endpoint, body, header).text.strip() == "duplicate"
    assert queued == [event_id, event_id] and ran == [event_id]
