"""Queue mode (``STRIPE_HOOKS_EVENT_CALLBACK``) and pausing: store the event as pending,
commit, and hand its id to the callback — or, paused, to nobody until ``resume``."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from .. import signals
from ..outcomes import DUPLICATE, FINAL_STATUSES, PAUSED, PENDING, QUEUED, UNAVAILABLE, Result
from .attempt import UNAVAILABLE_REASON, Delivery, insert_event, notify, unavailable, write_attempt
from .storage import status_of

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..events import Event
    from ..state import State

log = logging.getLogger("flask_stripe_hooks")


def enqueue(
    state: State,
    session: Session,
    event: Event,
    delivery: Delivery | None,
    endpoint_id: int | None = None,
    *,
    hold: bool = False,
) -> Result:
    """Store the event as pending, commit, hand its id to the callback.

    A redelivery of an event that is pending or failed hands it to the callback again (its
    queue message may be lost); the worker's lock makes a second message harmless. A
    redelivery of a processed event is a duplicate. ``hold`` (paused): store it, and hand it
    to nobody.
    """
    now = datetime.now(timezone.utc)
    outcome = PAUSED if hold else QUEUED
    if delivery is not None:
        endpoint_id = delivery.endpoint.id
    try:
        new, _ = insert_event(state, session, event, endpoint_id, now, status=PENDING, attempts=0)
        if not new and status_of(session, event.id) in FINAL_STATUSES:
            outcome = DUPLICATE
        write_attempt(state, session, outcome, delivery, event)
    except DBAPIError as exc:
        session.rollback()
        if not unavailable(exc):
            raise
        log.warning("database unavailable while storing %s: %s", event.id, exc)
        return Result(UNAVAILABLE, UNAVAILABLE_REASON, event.id)
    if outcome == DUPLICATE:
        notify(signals.duplicate_skipped, event=event)
        return Result(DUPLICATE, event_id=event.id)
    if hold:
        return Result(PAUSED, event_id=event.id)
    try:
        state.event_callback(event.id)  # type: ignore[misc]
    except Exception:
        # The event is durable; the sweeper (process-pending) will pick it up.
        log.exception("event callback failed for %s; it stays pending", event.id)
    notify(signals.event_queued, event=event)
    return Result(QUEUED, event_id=event.id)
