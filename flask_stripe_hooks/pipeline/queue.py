"""Queue mode (``STRIPE_HOOKS_EVENT_CALLBACK``) and pausing: store the event as pending,
commit, and hand its id to the callback (:func:`hand_over`) — or, paused, to nobody until
``resume``."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from .. import signals
from ..outcomes import (
    DUPLICATE,
    FINAL_STATUSES,
    PAUSED,
    PENDING,
    QUEUED,
    TWIN,
    UNAVAILABLE,
    Result,
)
from ..utils import Throttle
from . import twins
from .attempt import (
    UNAVAILABLE_REASON,
    Delivery,
    insert_event,
    no_schema,
    notify,
    unavailable,
    write_attempt,
)
from .storage import status_of

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..events import Event
    from ..state import State

log = logging.getLogger("flask_stripe_hooks")

#: A callback that keeps failing (its broker is away) is logged once a minute, not per event.
_failing = Throttle(60.0)


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
        twin_id = None
        if not new and status_of(session, event.id) in FINAL_STATUSES:
            # a snapshot event whose thin twin ran first fills the row its twin left
            twin_id = twins.adopt(state, session, event, endpoint_id, now)
            outcome = DUPLICATE if twin_id is None else TWIN
        write_attempt(state, session, outcome, delivery, event)
    except DBAPIError as exc:
        session.rollback()
        if no_schema(state, exc):
            return Result(UNAVAILABLE, UNAVAILABLE_REASON, event.id)
        if not unavailable(exc):
            raise
        log.warning("database unavailable while storing %s: %s", event.id, exc)
        return Result(UNAVAILABLE, UNAVAILABLE_REASON, event.id)
    if outcome == TWIN:
        notify(signals.twin_skipped, event=event, twin_id=twin_id)
        return Result(TWIN, f"twin of {twin_id}: it ran the handlers", event.id)
    if outcome == DUPLICATE:
        notify(signals.duplicate_skipped, event=event)
        return Result(DUPLICATE, event_id=event.id)
    if hold:
        return Result(PAUSED, event_id=event.id)
    hand_over(state, event.id)
    notify(signals.event_queued, event=event)
    return Result(QUEUED, event_id=event.id)


def hand_over(state: State, event_id: str) -> Exception | None:
    """Give a committed pending event's id to the queue callback; what it raised, if it did.

    The event is durable already, so a failure only delays it: it stays pending for the
    sweeper (``process-pending``). A failure sends ``publish-failed``, and is logged at most
    once a minute (with the number of failures since the last line).
    """
    try:
        state.event_callback(event_id)  # type: ignore[misc]
    except Exception as exc:
        notify(signals.publish_failed, event_ids=[event_id], exception=exc)
        held = _failing.due()
        if held is not None:
            more = f" ({held} more failure(s) since the last message)" if held else ""
            log.error(
                "event callback failed for %s; it stays pending for the sweeper%s",
                event_id,
                more,
                exc_info=exc,
            )
        return exc
    return None
