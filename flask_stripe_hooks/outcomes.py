"""Every outcome name, once, and :class:`Result`, what a delivery or a run came to.

Some outcomes are stored: an event's ``status`` is one of :data:`EVENT_STATUSES`, a
delivery's ``outcome`` one of :data:`DELIVERY_OUTCOMES`. The rest are only answered. The
pipeline speaks only of outcomes; the webhook view maps each to the HTTP status Stripe is
answered (:data:`flask_stripe_hooks.webhook.STATUS`), and the CLI, the admin and queue workers
read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Verified, stored and its handlers ran (event status and delivery outcome).
PROCESSED = "processed"
#: The event was processed before; its handlers did not run again (delivery outcome).
DUPLICATE = "duplicate"
#: Queue mode: stored as pending and handed to the queue (delivery outcome).
QUEUED = "queued"
#: Not verified: a bad signature, a stale timestamp, not an event (delivery outcome).
REJECTED = "rejected"
#: A handler raised; the event runs again on Stripe's next delivery (status and outcome).
FAILED = "failed"
#: Stored, waiting for a worker or for ``resume`` (event status).
PENDING = "pending"
#: A handler raised ``Retry``; ``next_attempt_at`` says when it is due (status and outcome).
RETRYING = "retrying"
#: A handler raised ``Ignore``; ``last_error`` holds its reason (status and outcome).
IGNORED = "ignored"
#: It failed ``STRIPE_HOOKS_MAX_ATTEMPTS`` times and is not run again until re-processed by
#: hand (status and outcome).
DEAD = "dead"
#: Paused (``flask stripe-hooks pause``): stored as pending, run on ``resume`` (outcome).
PAUSED = "paused"
#: No such endpoint (or it is disabled), or no such stored event.
MISSING = "missing"
#: The database could not be reached, or dropped the connection: try again later.
UNAVAILABLE = "unavailable"
#: Another worker holds the stored event locked: try again later.
BUSY = "busy"
#: The request came from an address ``STRIPE_HOOKS_ALLOWED_IPS`` does not allow.
FORBIDDEN = "forbidden"
#: One business event sent twice, as a snapshot event and as its thin twin (whose
#: ``snapshot_event`` names it): the other one ran the handlers, this one ran nothing
#: (event status and delivery outcome; ``twin_id`` names the other).
TWIN = "twin"
#: A thin event received during the shadow phase of a move to thin events: verified and
#: stored, its handlers run in a transaction that is rolled back (status and outcome).
SHADOW = "shadow"

#: What an event's ``status`` can be.
EVENT_STATUSES = (PENDING, PROCESSED, FAILED, RETRYING, IGNORED, DEAD, TWIN, SHADOW)
#: Statuses the pipeline does not run again on its own: a redelivery is a duplicate.
FINAL_STATUSES = (PROCESSED, IGNORED, DEAD, TWIN, SHADOW)
#: What a delivery's ``outcome`` can be.
DELIVERY_OUTCOMES = (
    PROCESSED,
    DUPLICATE,
    QUEUED,
    PAUSED,
    REJECTED,
    FAILED,
    RETRYING,
    IGNORED,
    TWIN,
    SHADOW,
)
#: Done with, as far as Stripe and a queue are concerned (see :attr:`Result.ok`).
OK_OUTCOMES = frozenset({PROCESSED, DUPLICATE, QUEUED, PAUSED, IGNORED, DEAD, TWIN, SHADOW})
#: The delivery was refused before any event was read.
REFUSED = frozenset({REJECTED, FORBIDDEN, MISSING})


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one delivery or run, and a short text that is safe to send back."""

    outcome: str
    reason: str = ""
    event_id: str | None = None
    #: For ``retrying``: seconds until the event is due.
    retry_after: float | None = None
    #: The endpoint the delivery reached (an ``EndpointInfo``), when it is known.
    endpoint: Any = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """Done with, as far as Stripe and a queue are concerned: processed, a duplicate,
        queued, paused, ignored, dead, a twin or a shadow (stored, and not to be retried on
        its own)."""
        return self.outcome in OK_OUTCOMES
