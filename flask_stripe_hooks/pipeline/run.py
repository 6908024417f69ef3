"""Running an event's handlers: the gate, the handlers and the delivery row in one
transaction, one commit, then the on-commit callbacks.

The happy path is three statements and one commit (four where the first two are separate,
on databases other than PostgreSQL):

1. ``INSERT`` the event row, status ``processed``: the exactly-once gate. A second delivery of
   the same id is skipped by ``ON CONFLICT DO NOTHING`` (an ``IntegrityError`` on databases
   without it) with no ``SELECT`` first; on PostgreSQL a concurrent one waits for the first.
2. Record the event as the newest applied to its object, unless a later one is (then the event
   is stale, and ``latest_only`` handlers skip it); the object's row stays locked. On
   PostgreSQL this is part of the event's ``INSERT`` (a data-modifying ``WITH``).
3. The handlers, on the same ``db.session``, so their writes share the transaction.
4. ``INSERT`` the delivery row, then ``COMMIT``. A 2xx is only sent after it.

When a handler raises, the transaction is rolled back whole and the attempt is written in a
new, short transaction (:func:`~.attempt.write_failure`): the delivery, the event as
``failed`` (``retrying`` or ``ignored`` for ``Retry`` and ``Ignore``; ``dead`` after
``STRIPE_HOOKS_MAX_ATTEMPTS``). Only a processed, ignored or dead event is a duplicate: the
next delivery of any other claims it and runs the handlers again.
"""

from __future__ import annotations

import logging
import time
import traceback as tb
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from .. import signals
from ..errors import Ignore, Retry
from ..events import Event
from ..outcomes import (
    BUSY,
    DEAD,
    DUPLICATE,
    FAILED,
    FINAL_STATUSES,
    IGNORED,
    MISSING,
    PAUSED,
    PROCESSED,
    RETRYING,
    UNAVAILABLE,
    Result,
)
from ..stripe_api import client_for
from .attempt import (
    UNAVAILABLE_REASON,
    Delivery,
    insert_event,
    notify,
    unavailable,
    write_attempt,
    write_failure,
)
from .callbacks import collecting, run, stop_collecting
from .endpoint_cache import COLUMNS, EndpointInfo, info
from .storage import claim, mark_stale, take, track_newest

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from ..state import State

log = logging.getLogger("flask_stripe_hooks")


def bind(state: State, event: Event, endpoint: EndpointInfo | None) -> Event:
    """Let the event reach Stripe through the endpoint's account and mode, when a handler asks
    (verifying needs no client; building one needs a key)."""
    account = endpoint.account if endpoint is not None else ""
    event.bind_client(lambda: client_for(state, account=account, livemode=event.livemode))
    return event


def paused(state: State, endpoint: EndpointInfo | None) -> bool:
    """The app (``STRIPE_HOOKS_PAUSED``) or the endpoint is paused: store, run on resume."""
    return state.paused or (endpoint is not None and endpoint.paused)


def run_handlers(
    state: State,
    session: Session,
    event: Event,
    endpoint: EndpointInfo | None,
    delivery: Delivery | None,
    *,
    stored: bool = False,
) -> Result:
    """Gate, handlers, delivery row, one commit. Rolls back and records any failure.

    ``stored``: the event row exists and this transaction has claimed it already
    (:func:`process_stored`), so it is not inserted.
    """
    now = datetime.now(timezone.utc)
    callbacks, token = collecting()
    endpoint_id = endpoint.id if endpoint is not None else None
    connection: sa.Connection | None = None
    try:
        claimed, new, newer = True, False, None
        object_id, created = event.object_id, event.created_at
        if not stored:
            new, newer = insert_event(
                state,
                session,
                event,
                endpoint_id,
                now,
                track=True,
                status=PROCESSED,
                attempts=1,
                processed_at=now,
            )
            if not new:  # stored before: a failed event is claimed, a processed one is not
                claimed = claim(session, event.id, now)
        if not claimed:
            write_attempt(state, session, DUPLICATE, delivery, event)
            notify(signals.duplicate_skipped, event=event)
            return Result(DUPLICATE, event_id=event.id)
        started = time.perf_counter()
        connection = session.connection()
        if not new and object_id is not None and created is not None:  # stored before
            newer = track_newest(connection, object_id, event.id, created)
        object.__setattr__(event, "newer_event_id", newer)
        skipped = state.registry.dispatch(event, endpoint=endpoint)
        if skipped:
            mark_stale(session.connection(), event.id, event.newer_event_id or "", skipped)
            notify(signals.stale_skipped, event=event, handlers=skipped)
        write_attempt(state, session, PROCESSED, delivery, event, connection=connection)
    except Ignore as exc:
        reason = exc.reason or None
        write_failure(state, session, IGNORED, delivery, event, endpoint_id, reason)
        notify(signals.event_ignored, event=event, reason=exc.reason)
        return Result(IGNORED, exc.reason or IGNORED, event.id)
    except Retry as exc:
        reason = exc.reason or None
        status, delay = write_failure(
            state, session, RETRYING, delivery, event, endpoint_id, reason, retry=exc
        )
        if status == DEAD:
            notify(signals.event_dead, event=event, exception=exc)
            return Result(DEAD, "dead: retried too often", event.id)
        notify(signals.event_retrying, event=event, reason=exc.reason, delay=delay)
        return Result(RETRYING, exc.reason or "not yet, retry later", event.id, retry_after=delay)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        trace = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
        status, _ = write_failure(
            state, session, FAILED, delivery, event, endpoint_id, error, traceback=trace
        )
        notify(signals.event_failed, event=event, exception=exc)
        if unavailable(exc):
            log.warning("database unavailable while processing %s: %s", event.id, exc)
            return Result(UNAVAILABLE, UNAVAILABLE_REASON, event.id)
        log.exception("handler failed for event %s (%s)", event.id, event.type)
        if status == DEAD:
            notify(signals.event_dead, event=event, exception=exc)
            return Result(DEAD, "dead: failed too often", event.id)
        return Result(FAILED, "handler failed", event.id)
    finally:
        stop_collecting(token)
    run(callbacks)
    notify(
        signals.event_processed,
        event=event,
        duration_ms=(time.perf_counter() - started) * 1000.0,
    )
    return Result(PROCESSED, event_id=event.id)


def process_stored(
    state: State, event_id: str, *, force: bool = False, dead: bool = False
) -> Result:
    """Run the handlers of a stored event: the worker's and ``reprocess``'s entry point.

    Locks and claims the row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two workers never
    run the same event at once), reading its endpoint in the same statement. An event the
    pipeline is done with (processed, ignored, dead) is skipped (``duplicate``) unless
    ``force`` is set; ``dead`` runs dead events too (what ``reprocess --failed`` does once
    their cause is fixed). An event locked by another worker is ``busy``: try again later, it
    is either processed by then or free again (a worker that died drops its lock).
    """
    session = state.db.session
    skip = () if force else tuple(s for s in FINAL_STATUSES if not (dead and s == DEAD))
    try:
        row, found, why = take(session, event_id, datetime.now(timezone.utc), skip, COLUMNS)
        if why is not None:
            session.rollback()
            if why == BUSY:
                return Result(BUSY, "being processed by another worker", event_id)
            if why == MISSING:
                return Result(MISSING, f"no stored event {event_id}", event_id)
            return Result(DUPLICATE, event_id=event_id)
        endpoint = None if found is None else info(found, state)
        if not force and paused(state, endpoint):
            session.rollback()
            return Result(PAUSED, "paused: it runs on resume", event_id)
    except DBAPIError as exc:
        session.rollback()
        if not unavailable(exc):
            raise
        log.warning("database unavailable while loading event %s: %s", event_id, exc)
        return Result(UNAVAILABLE, UNAVAILABLE_REASON, event_id)
    event = bind(state, Event.from_row(row, endpoint), endpoint)
    return run_handlers(state, session, event, endpoint, None, stored=True)
