"""Running an event's handlers: the gate, the handlers and the delivery row in one
transaction, one commit, then the on-commit callbacks.

The happy path is three statements and one commit (four where the first two are separate,
on databases other than PostgreSQL):

1. ``INSERT`` the event row, status ``processed``: the exactly-once gate. A second delivery of
   the same id is skipped by ``ON CONFLICT DO NOTHING`` (an ``IntegrityError`` on databases
   without it) with no ``SELECT`` first; on PostgreSQL a concurrent one waits for the first.
2. Record the event as the newest applied to its object, unless a later one is (then the event
   is stale, and ``latest_only`` handlers skip it); the object's row stays locked. On
   PostgreSQL this is part of the event's ``INSERT`` (a data-modifying ``WITH``), except for a
   thin event with a twin: it claims the twin key first (:mod:`.twins`), then its object.
3. The handlers, on the same ``db.session``, so their writes share the transaction.
4. ``INSERT`` the delivery row, then ``COMMIT``. A 2xx is only sent after it.

When a handler raises, the transaction is rolled back whole and the attempt is written in a
new, short transaction (:func:`~.attempt.write_failure`): the delivery, the event as
``failed`` (``retrying`` or ``ignored`` for ``Retry`` and ``Ignore``; ``dead`` after
``STRIPE_HOOKS_MAX_ATTEMPTS``). Only a processed, ignored or dead event is a duplicate: the
next delivery of any other claims it and runs the handlers again.

A re-run (:func:`process_stored`) records its own outcome in the same way, whatever the
event's status was: its error, traceback and attempt. A dead event that fails again stays
dead with the new error, and ``event-dead`` is not sent again: it died once.
"""

from __future__ import annotations

import logging
import time
import traceback as tb
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

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
    SHADOW,
    TWIN,
    UNAVAILABLE,
    Result,
)
from ..stripe_api import client_as
from . import twins
from .attempt import (
    UNAVAILABLE_REASON,
    Delivery,
    Taken,
    insert_event,
    no_schema,
    notify,
    unavailable,
    write_attempt,
    write_failure,
)
from .callbacks import collecting, run, stop_collecting
from .endpoint_cache import COLUMNS, EndpointInfo, info
from .storage import claim, mark_stale, set_attempt, take, track_newest

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from ..state import State

log = logging.getLogger("flask_stripe_hooks")


def bind(state: State, event: Event, endpoint: EndpointInfo | None) -> Event:
    """Let the event reach Stripe, when a handler asks, with the key of the endpoint's account
    and mode, as the account the event happened in: a Connect event's requests carry its
    ``Stripe-Account``, a thin event's its ``Stripe-Context`` (verifying needs no client;
    building one needs a key)."""
    account = endpoint.account if endpoint is not None else ""
    event.bind_client(
        lambda: client_as(
            state,
            account=account,
            livemode=event.livemode,
            connected=event.connected_account,
            context=event.context,
        )
    )
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
    taken: Taken | None = None,
) -> Result:
    """Gate, handlers, delivery row, one commit. Rolls back and records any failure.

    ``taken``: re-processing (:func:`process_stored`), the event's row as it was taken (its
    status and attempts before this run); this transaction has claimed it already, so it is
    not inserted.
    """
    now = datetime.now(timezone.utc)
    callbacks, token = collecting()
    endpoint_id = endpoint.id if endpoint is not None else None
    shadow = event.thin and endpoint is not None and endpoint.phase == twins.SHADOW_PHASE
    object.__setattr__(event, "shadow", shadow)
    connection: sa.Connection | None = None
    shadow_error: Exception | None = None
    ran: list[dict[str, Any]] | None = None  # the handlers' record, once they start
    try:
        claimed, new, newer = True, False, None
        twins.look_up(event, endpoint)
        object_id, created = event.object_id, event.created_at
        # A thin event with a twin takes the twin key before its object's row: its snapshot
        # half locks them in that order too (one statement), and the opposite order deadlocks.
        settles = event.snapshot_event is not None and not shadow
        if taken is None:
            new, newer = insert_event(
                state,
                session,
                event,
                endpoint_id,
                now,
                track=not settles,
                status=PROCESSED,
                attempts=1,
                processed_at=now,
            )
            if not new:  # stored before: a failed event is claimed, a processed one is not
                claimed = claim(session, event.id, now)
        twin_id = None
        if not claimed and taken is None:  # a snapshot event whose thin twin ran first?
            twin_id = twins.adopt(state, session, event, endpoint_id, now)
        elif claimed and not shadow:
            twin_id = twins.settle(state, session, event, now)
        if twin_id is not None:
            write_attempt(state, session, TWIN, delivery, event)
            notify(signals.twin_skipped, event=event, twin_id=twin_id)
            return Result(TWIN, f"twin of {twin_id}: it ran the handlers", event.id)
        if not claimed:
            write_attempt(state, session, DUPLICATE, delivery, event)
            notify(signals.duplicate_skipped, event=event)
            return Result(DUPLICATE, event_id=event.id)
        started = time.perf_counter()
        connection = session.connection()
        if (settles or not new) and object_id is not None and created is not None:
            newer = track_newest(connection, object_id, event.id, created)
        object.__setattr__(event, "newer_event_id", newer)
        ran = []
        # A flush after each handler (nothing to do for one that wrote nothing): a failure
        # of a handler's writes is raised, and recorded, as that handler's.
        skipped = state.registry.dispatch(
            event, ran=ran, after_each=session.flush, endpoint=endpoint
        )
        if skipped and not shadow:
            mark_stale(session.connection(), event.id, event.newer_event_id or "", skipped)
            notify(signals.stale_skipped, event=event, handlers=skipped)
        if not shadow:
            write_attempt(
                state, session, PROCESSED, delivery, event, connection=connection, handlers=ran
            )
    except (Ignore, Retry) as exc:
        if not shadow:  # in shadow, not failures: the event is never run again anyway
            return _declined(state, session, event, endpoint_id, delivery, exc, taken, ran)
    except Exception as exc:
        if no_schema(state, exc):  # nothing to record it in: logged once a minute
            session.rollback()
            return Result(UNAVAILABLE, UNAVAILABLE_REASON, event.id)
        if shadow and not unavailable(exc):
            shadow_error = exc
        else:
            return _failed(state, session, event, endpoint_id, delivery, exc, taken, ran)
    finally:
        stop_collecting(token)
    if shadow:
        return _shadowed(state, session, event, endpoint_id, delivery, shadow_error)
    run(callbacks)
    notify(
        signals.event_processed,
        event=event,
        duration_ms=(time.perf_counter() - started) * 1000.0,
    )
    return Result(PROCESSED, event_id=event.id)


def _died(state: State, event: Event, exc: BaseException, taken: Taken | None) -> None:
    """Send ``event-dead`` for an event that has just died, not for one that had died."""
    if taken is None or not taken.died(state.max_attempts):
        notify(signals.event_dead, event=event, exception=exc)


def _failed(
    state: State,
    session: Session,
    event: Event,
    endpoint_id: int | None,
    delivery: Delivery | None,
    exc: Exception,
    taken: Taken | None,
    ran: list[dict[str, Any]] | None,
) -> Result:
    """A handler (or the database) raised: roll back, store the event as ``failed`` (``dead``
    once its attempts are spent) with the traceback; the database being away is
    ``unavailable``."""
    error = f"{type(exc).__name__}: {exc}"[:2000]
    trace = _blame(ran) + "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    status, _ = write_failure(
        state,
        session,
        FAILED,
        delivery,
        event,
        endpoint_id,
        error,
        traceback=trace,
        taken=taken,
        handlers=ran,
    )
    notify(signals.event_failed, event=event, exception=exc)
    if unavailable(exc):
        log.warning("database unavailable while processing %s: %s", event.id, exc)
        return Result(UNAVAILABLE, UNAVAILABLE_REASON, event.id)
    log.exception("handler failed for event %s (%s)", event.id, event.type)
    if status == DEAD:
        _died(state, event, exc, taken)
        return Result(DEAD, "dead: failed too often", event.id)
    return Result(FAILED, "handler failed", event.id)


def _declined(
    state: State,
    session: Session,
    event: Event,
    endpoint_id: int | None,
    delivery: Delivery | None,
    exc: Ignore | Retry,
    taken: Taken | None,
    ran: list[dict[str, Any]] | None,
) -> Result:
    """A handler raised ``Ignore`` or ``Retry``: roll back, and store the event as
    ``ignored`` or ``retrying`` (``dead`` once its attempts are spent)."""
    reason = exc.reason or None
    if isinstance(exc, Ignore):
        write_failure(
            state, session, IGNORED, delivery, event, endpoint_id, reason, taken=taken, handlers=ran
        )
        notify(signals.event_ignored, event=event, reason=exc.reason)
        return Result(IGNORED, exc.reason or IGNORED, event.id)
    status, delay = write_failure(
        state,
        session,
        RETRYING,
        delivery,
        event,
        endpoint_id,
        reason,
        retry=exc,
        taken=taken,
        handlers=ran,
    )
    if status == DEAD:
        _died(state, event, exc, taken)
        return Result(DEAD, "dead: retried too often", event.id)
    notify(signals.event_retrying, event=event, reason=exc.reason, delay=delay)
    return Result(RETRYING, exc.reason or "not yet, retry later", event.id, retry_after=delay)


def _shadowed(
    state: State,
    session: Session,
    event: Event,
    endpoint_id: int | None,
    delivery: Delivery | None,
    exc: Exception | None,
) -> Result:
    """The shadow phase of a move to thin events: the handlers ran; roll back all they wrote
    (and drop their ``on_commit`` callbacks), then store the event as ``shadow`` with what a
    handler raised, in a new transaction. Answered 200: a failure here is for the person
    moving, not for Stripe to retry."""
    session.rollback()
    error = trace = None
    if exc is not None:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        trace = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    now = datetime.now(timezone.utc)
    insert_event(
        state, session, event, endpoint_id, now, status=SHADOW, attempts=1, processed_at=now
    )
    set_attempt(session, event.id, SHADOW, 1, error, trace)
    write_attempt(state, session, SHADOW, delivery, event, error=error)
    notify(signals.event_shadowed, event=event, exception=exc)
    reason = "shadow: handlers ran, their writes rolled back"
    return Result(SHADOW, reason if exc is None else "shadow: a handler failed", event.id)


def _blame(ran: list[dict[str, Any]] | None) -> str:
    """The line above a failure's traceback that names the handler it came from."""
    failed = next((h for h in ran or () if "error" in h), None)
    if failed is None:
        return ""
    if failed.get("flushed"):
        return f"Handler {failed['name']}: its writes failed when flushed after it returned.\n"
    return f"Handler {failed['name']} raised.\n"


def process_stored(
    state: State, event_id: str, *, force: bool = False, dead: bool = False
) -> Result:
    """Run the handlers of a stored event: the worker's and ``reprocess``'s entry point.
    An event whose twin ran the handlers is never run (``twin``): run its twin again.

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
        took = take(session, event_id, datetime.now(timezone.utc), skip, COLUMNS)
        if took.why is not None:
            session.rollback()
            if took.why == BUSY:
                return Result(BUSY, "being processed by another worker", event_id)
            if took.why == MISSING:
                return Result(MISSING, f"no stored event {event_id}", event_id)
            if took.why == TWIN:  # its twin ran the business event: that is the one to run
                return Result(TWIN, f"twin of {took.twin_id}: it ran the handlers", event_id)
            return Result(DUPLICATE, event_id=event_id)
        # Without its secrets: nothing is verified, and they need not be readable.
        endpoint = None if took.endpoint is None else info(took.endpoint, None)
        if not force and paused(state, endpoint):
            session.rollback()
            return Result(PAUSED, "paused: it runs on resume", event_id)
    except DBAPIError as exc:
        session.rollback()
        if no_schema(state, exc):
            return Result(UNAVAILABLE, UNAVAILABLE_REASON, event_id)
        if not unavailable(exc):
            raise
        log.warning("database unavailable while loading event %s: %s", event_id, exc)
        return Result(UNAVAILABLE, UNAVAILABLE_REASON, event_id)
    event = bind(state, Event.from_row(took.row, endpoint), endpoint)
    taken = Taken(took.status, took.attempts)
    return run_handlers(state, session, event, endpoint, None, taken=taken)
