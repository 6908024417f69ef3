"""The pipeline: verified payload → stored event → handlers, in one transaction → commit →
on-commit callbacks.

Every caller goes through here: the webhook view (:func:`receive`), the CLI, the admin and
queue workers (:func:`process_stored`). The happy path is three statements and one commit
(four where the first two are separate, on databases other than PostgreSQL):

1. ``INSERT`` the event row, status ``processed``: the exactly-once gate. A second delivery of
   the same id is skipped by ``ON CONFLICT DO NOTHING`` (an ``IntegrityError`` on databases
   without it) with no ``SELECT`` first; on PostgreSQL a concurrent one waits for the first.
2. Record the event as the newest applied to its object, unless a later one is (then the event
   is stale, and ``latest_only`` handlers skip it); the object's row stays locked. On
   PostgreSQL this is part of the event's ``INSERT`` (a data-modifying ``WITH``).
3. The handlers, on the same ``db.session``, so their writes share the transaction.
4. ``INSERT`` the delivery row, then ``COMMIT``. A 2xx is only sent after it.

When a handler raises, the transaction is rolled back whole and the attempt is written in a
new, short transaction: the delivery, the event as ``failed`` (``retrying`` or ``ignored`` for
``Retry`` and ``Ignore``; ``dead`` after ``STRIPE_HOOKS_MAX_ATTEMPTS``). Only a processed,
ignored or dead event is a duplicate: the next delivery of any other claims it and runs the
handlers again.
"""

from __future__ import annotations

import logging
import time
import traceback as tb
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from . import signals
from .callbacks import collecting, run, stop_collecting
from .crypto import UnreadableSecret
from .dispatch import Ignore, Retry
from .endpoint_cache import EndpointInfo, endpoint_by_id, endpoint_by_uuid
from .events import Event
from .guard import redacted
from .models import (
    DEAD,
    DUPLICATE,
    FAILED,
    FINAL_STATUSES,
    IGNORED,
    PENDING,
    PROCESSED,
    QUEUED,
    REJECTED,
    RETRYING,
    event_table,
)
from .outcomes import BUSY, FORBIDDEN, MISSING, PAUSED, UNAVAILABLE, Result
from .storage import (
    attempts_of,
    claim,
    insert_delivery,
    insert_event,
    insert_tracked_event,
    mark_stale,
    set_attempt,
    track_newest,
)
from .stripe_api import client_for
from .verification import Rejected, verify, verify_thin

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .state import State

log = logging.getLogger("flask_stripe_hooks")

#: Request headers worth keeping with a delivery (never Authorization or Cookie).
KEPT_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "Stripe-Signature")

_UNAVAILABLE_REASON = "database unavailable, retry later"


def _notify(signal: Any, **kwargs: Any) -> None:
    if signal.receivers:
        try:
            signal.send(current_app._get_current_object(), **kwargs)  # type: ignore[attr-defined]
        except Exception:
            log.exception("receiver of signal %r failed", signal.name)


# -- rows --------------------------------------------------------------------------------


def _event_row(
    event: Event, endpoint_id: int | None, now: datetime, redact: Any = None, **columns: Any
) -> dict[str, Any]:
    """The event row's values with ``columns`` (its status and counts); ``redact``
    (``STRIPE_HOOKS_REDACT``) gives what is stored of its data."""
    return {
        "id": event.id,
        "type": event.type,
        "livemode": event.livemode,
        "account": event.account,
        "api_version": event.api_version,
        "created": event.created_at,
        "data": event.data if redact is None else redacted(redact, event.data),
        "request_id": event.request_id,
        "idempotency_key": event.idempotency_key,
        "endpoint_id": endpoint_id,
        "received_at": now,
        **columns,
    }


@dataclass(slots=True)
class Delivery:
    """The request being handled, written as one ``stripe_hooks_delivery`` row."""

    endpoint: EndpointInfo
    body: bytes
    headers: dict[str, str]
    remote_addr: str | None
    received_at: datetime
    started: float
    #: The outcomes whose body is kept (``STRIPE_HOOKS_STORE_BODY``); ``None``: all.
    keep: frozenset[str] | None = None

    def values(
        self,
        outcome: str,
        *,
        valid: bool,
        event_id: str | None = None,
        error: str | None = None,
        traceback: str | None = None,
    ) -> dict[str, Any]:
        return {
            "endpoint_id": self.endpoint.id,
            "received_at": self.received_at,
            # Cut to the column: behind a ProxyFix that trusts too many hops, the
            # client writes this value.
            "remote_addr": self.remote_addr[:64] if self.remote_addr else None,
            "headers": self.headers,
            "body": self.body if self.keep is None or outcome in self.keep else b"",
            "valid": valid,
            "outcome": outcome,
            "error": error,
            "traceback": traceback,
            "event_id": event_id,
            "duration_ms": (time.perf_counter() - self.started) * 1000.0,
        }


def _record(
    state: State,
    session: Session,
    event: Event,
    endpoint_id: int | None,
    delivery: Delivery | None,
    status: str,
    error: str | None,
    *,
    traceback: str | None = None,
    retry: Retry | None = None,
) -> tuple[str, float | None]:
    """In a new transaction: count an attempt that did not process the event — ``failed``,
    ``retrying`` or ``ignored``, ``dead`` once ``STRIPE_HOOKS_MAX_ATTEMPTS`` are spent — and
    write the delivery with it. Never re-adds rolled-back objects; an event finished
    meanwhile by a concurrent attempt stays as it is.

    Returns the status stored and, for a retry, the seconds until it is due."""
    now = datetime.now(timezone.utc)
    delay: float | None = None
    stored = status
    try:
        for _ in range(2):  # a row inserted meanwhile by a concurrent attempt: count on it
            current = attempts_of(session, event.id)
            attempts = 1 if current is None else current[1] + 1
            if current is not None and current[0] in FINAL_STATUSES:
                stored = current[0]
                break
            stored = status
            if status in (FAILED, RETRYING) and attempts >= state.max_attempts:
                stored = DEAD
            next_at = None
            if stored == RETRYING and retry is not None:
                delay = retry.delay(attempts, state.retry_max)
                next_at = now + timedelta(seconds=delay)
            if current is not None:
                set_attempt(session, event.id, stored, attempts, error, traceback, next_at)
                break
            try:
                with session.begin_nested():
                    row = _event_row(
                        event,
                        endpoint_id,
                        now,
                        state.redact,
                        status=stored,
                        attempts=1,
                        last_error=error,
                        last_traceback=traceback,
                        next_attempt_at=next_at,
                    )
                    new = bool(insert_event(session.connection(), row))
                if new:
                    break
            except IntegrityError:
                pass
        if delivery is not None:  # what this attempt did, whatever a concurrent one did
            insert_delivery(
                session.connection(),
                delivery.values(
                    status, valid=True, event_id=event.id, error=error, traceback=traceback
                ),
            )
        session.commit()
    except Exception:
        session.rollback()
        log.exception("could not record the outcome of event %s", event.id)
    return stored, delay


# -- the pipeline ------------------------------------------------------------------------


def _bind(state: State, event: Event, endpoint: EndpointInfo | None) -> Event:
    """Let the event reach Stripe through the endpoint's account and mode, when a handler asks
    (verifying needs no client; building one needs a key)."""
    account = endpoint.account if endpoint is not None else ""
    event.bind_client(lambda: client_for(state, account=account, livemode=event.livemode))
    return event


def _run_handlers(
    state: State,
    session: Session,
    event: Event,
    endpoint: EndpointInfo | None,
    delivery: Delivery | None,
    *,
    stored: bool = False,
    skip: tuple[str, ...] = FINAL_STATUSES,
) -> Result:
    """Gate, handlers, delivery row, one commit. Rolls back and records any failure.

    ``stored``: the event row exists already (re-processing), so it is claimed rather
    than inserted.
    """
    now = datetime.now(timezone.utc)
    callbacks, token = collecting()
    endpoint_id = endpoint.id if endpoint is not None else None
    connection: sa.Connection | None = None
    try:
        claimed, new, newer = True, False, None
        object_id, created = event.object_id, event.created_at
        if stored:
            claimed = claim(session, event.id, now, skip=skip)
        else:
            try:
                # Compiled once (storage.py) and run on the session's connection: the same
                # transaction, without the ORM's per-statement work (handlers' objects are
                # flushed by the commit). The newest event per object is recorded with it.
                connection = session.connection()
                row = _event_row(
                    event,
                    endpoint_id,
                    now,
                    state.redact,
                    status=PROCESSED,
                    attempts=1,
                    processed_at=now,
                )
                new, newer = insert_tracked_event(connection, row, object_id)
            except IntegrityError:  # a database without ON CONFLICT: the transaction is over
                session.rollback()
                new = False
            if not new:  # stored before: a failed event is claimed, a processed one is not
                claimed = claim(session, event.id, now)
        if not claimed:
            if delivery is not None:
                insert_delivery(
                    session.connection(), delivery.values(DUPLICATE, valid=True, event_id=event.id)
                )
            session.commit()
            _notify(signals.duplicate_skipped, event=event)
            return Result(DUPLICATE, event_id=event.id)
        started = time.perf_counter()
        connection = session.connection()
        if not new and object_id is not None and created is not None:  # stored before
            newer = track_newest(connection, object_id, event.id, created)
        object.__setattr__(event, "newer_event_id", newer)
        skipped = state.registry.dispatch(event, endpoint=endpoint)
        if skipped:
            mark_stale(session.connection(), event.id, event.newer_event_id or "", skipped)
            _notify(signals.stale_skipped, event=event, handlers=skipped)
        if delivery is not None:
            if connection is None or connection.closed:  # a handler ended the transaction
                connection = session.connection()
            insert_delivery(connection, delivery.values(PROCESSED, valid=True, event_id=event.id))
        session.commit()
    except Ignore as exc:
        session.rollback()
        _record(state, session, event, endpoint_id, delivery, IGNORED, exc.reason or None)
        _notify(signals.event_ignored, event=event, reason=exc.reason)
        return Result(IGNORED, exc.reason or IGNORED, event.id)
    except Retry as exc:
        session.rollback()
        now_status, delay = _record(
            state, session, event, endpoint_id, delivery, RETRYING, exc.reason or None, retry=exc
        )
        if now_status == DEAD:
            _notify(signals.event_dead, event=event, exception=exc)
            return Result(DEAD, "dead: retried too often", event.id)
        _notify(signals.event_retrying, event=event, reason=exc.reason, delay=delay)
        return Result(RETRYING, exc.reason or "not yet, retry later", event.id, retry_after=delay)
    except Exception as exc:
        session.rollback()
        error = f"{type(exc).__name__}: {exc}"[:2000]
        trace = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
        now_status, _ = _record(
            state, session, event, endpoint_id, delivery, FAILED, error, traceback=trace
        )
        _notify(signals.event_failed, event=event, exception=exc)
        if _unavailable(exc):
            log.warning("database unavailable while processing %s: %s", event.id, exc)
            return Result(UNAVAILABLE, _UNAVAILABLE_REASON, event.id)
        log.exception("handler failed for event %s (%s)", event.id, event.type)
        if now_status == DEAD:
            _notify(signals.event_dead, event=event, exception=exc)
            return Result(DEAD, "dead: failed too often", event.id)
        return Result(FAILED, "handler failed", event.id)
    finally:
        stop_collecting(token)
    run(callbacks)
    _notify(
        signals.event_processed,
        event=event,
        duration_ms=(time.perf_counter() - started) * 1000.0,
    )
    return Result(PROCESSED, event_id=event.id)


def receive(
    state: State,
    endpoint_uuid: uuid.UUID,
    body: bytes,
    headers: Any,
    remote_addr: str | None,
) -> Result:
    """Handle one HTTP delivery. Never raises for bad input; the result says what happened."""
    started = time.perf_counter()
    if state.allowed_ips is not None and not state.allowed_ips(remote_addr):
        return _reject(None, FORBIDDEN, "address not allowed")
    signature = headers.get("Stripe-Signature")
    if not signature:
        return _reject(None, REJECTED, "missing Stripe-Signature header")
    session = state.db.session
    found = _load_endpoint(state, session, endpoint_uuid)
    if isinstance(found, Result):
        return found
    endpoint, cached = found
    _notify(signals.delivery_received, endpoint=endpoint, remote_addr=remote_addr)

    delivery = Delivery(
        endpoint=endpoint,
        body=body,
        headers={k: headers[k] for k in KEPT_HEADERS if k in headers},
        remote_addr=remote_addr,
        received_at=datetime.now(timezone.utc),
        started=started,
        keep=state.keep_body,
    )
    try:
        try:
            event = _verify(state, endpoint, body, signature)
        except Rejected:
            if not cached:
                raise
            # The cached row may be out of date (a rotated secret): read it and try again.
            found = _load_endpoint(state, session, endpoint_uuid, fresh=True)
            if isinstance(found, Result):
                return found
            endpoint, cached = found
            delivery.endpoint = endpoint
            event = _verify(state, endpoint, body, signature)
    except Rejected as exc:
        limit = state.rejected_limit  # a flood of bad signatures cannot fill the disk
        try:
            if limit is None or limit.keep(delivery.endpoint.id):
                insert_delivery(
                    session.connection(), delivery.values(REJECTED, valid=False, error=exc.reason)
                )
            session.commit()
        except OperationalError:
            session.rollback()
            return Result(UNAVAILABLE, _UNAVAILABLE_REASON)
        return _reject(endpoint, REJECTED, exc.reason)

    _bind(state, event, endpoint)
    if _paused(state, endpoint):
        return _enqueue(state, session, event, delivery, hold=True)
    if state.event_callback is not None:
        return _enqueue(state, session, event, delivery)
    return _run_handlers(state, session, event, endpoint, delivery)


def _load_endpoint(
    state: State, session: Session, endpoint_uuid: uuid.UUID, *, fresh: bool = False
) -> tuple[EndpointInfo, bool] | Result:
    """The enabled endpoint (and whether it came from the cache), or the result to answer."""
    try:
        endpoint, cached = endpoint_by_uuid(state, session, endpoint_uuid, fresh=fresh)
    except OperationalError:
        session.rollback()
        log.warning("database unavailable while loading endpoint %s", endpoint_uuid)
        return Result(UNAVAILABLE, _UNAVAILABLE_REASON)
    except UnreadableSecret:  # logged where it is found, naming the key: 503, Stripe retries
        session.rollback()
        return Result(UNAVAILABLE, _UNAVAILABLE_REASON)
    if endpoint is None or not endpoint.enabled:
        session.rollback()
        return _reject(None, MISSING, "unknown endpoint")
    return endpoint, cached


def _verify(state: State, endpoint: EndpointInfo, body: bytes, signature: str) -> Event:
    tolerance = state.tolerance if endpoint.tolerance is None else endpoint.tolerance
    if endpoint.payload == "thin":  # a v2 event destination: stripe-python parses it
        return verify_thin(
            body,
            signature,
            endpoint.secrets,
            tolerance=tolerance,
            livemode=endpoint.livemode,
            account=endpoint.account,
        )
    return verify(
        body, signature, endpoint.secrets, tolerance=tolerance, livemode=endpoint.livemode
    )


def _reject(endpoint: EndpointInfo | None, outcome: str, reason: str) -> Result:
    # The signal's documented ``status`` is what Stripe is answered.
    status = {MISSING: 404, FORBIDDEN: 403}.get(outcome, 400)
    _notify(signals.delivery_rejected, endpoint=endpoint, status=status, reason=reason)
    return Result(outcome, reason)


def _enqueue(
    state: State,
    session: Session,
    event: Event,
    delivery: Delivery | None,
    endpoint_id: int | None = None,
    *,
    hold: bool = False,
) -> Result:
    """Queue mode: store the event as pending, commit, hand its id to the callback.

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
        try:
            connection, pending = session.connection(), {"status": PENDING, "attempts": 0}
            row = _event_row(event, endpoint_id, now, state.redact, **pending)
            new = bool(insert_event(connection, row))
        except IntegrityError:  # a database without ON CONFLICT: the transaction is over
            session.rollback()
            new = False
        if not new:
            status = session.execute(
                sa.select(event_table.c.status).where(event_table.c.id == event.id)
            ).scalar()
            if status in FINAL_STATUSES:
                outcome = DUPLICATE
        if delivery is not None:
            insert_delivery(
                session.connection(), delivery.values(outcome, valid=True, event_id=event.id)
            )
        session.commit()
    except DBAPIError as exc:
        session.rollback()
        if not _unavailable(exc):
            raise
        log.warning("database unavailable while storing %s: %s", event.id, exc)
        return Result(UNAVAILABLE, _UNAVAILABLE_REASON, event.id)
    if outcome == DUPLICATE:
        _notify(signals.duplicate_skipped, event=event)
        return Result(DUPLICATE, event_id=event.id)
    if hold:
        return Result(PAUSED, event_id=event.id)
    try:
        state.event_callback(event.id)  # type: ignore[misc]
    except Exception:
        # The event is durable; the sweeper (process-pending) will pick it up.
        log.exception("event callback failed for %s; it stays pending", event.id)
    _notify(signals.event_queued, event=event)
    return Result(QUEUED, event_id=event.id)


def _paused(state: State, endpoint: EndpointInfo | None) -> bool:
    """The app (``STRIPE_HOOKS_PAUSED``) or the endpoint is paused: store, run on resume."""
    return state.paused or (endpoint is not None and endpoint.paused)


def _unavailable(exc: BaseException) -> bool:
    """The database could not be reached (or dropped the connection): try again later."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def store_event(state: State, event: Event, endpoint: EndpointInfo | None = None) -> Result:
    """Store and process an event that did not come through a webhook (``fetch-missed``).

    The same path as a delivery without its request: in queue mode the event is stored as
    pending and handed to the callback, otherwise its handlers run now. An event stored
    already is processed only if it has not been.
    """
    session = state.db.session
    _bind(state, event, endpoint)
    endpoint_id = endpoint.id if endpoint else None
    if _paused(state, endpoint):
        return _enqueue(state, session, event, None, endpoint_id, hold=True)
    if state.event_callback is not None:
        return _enqueue(state, session, event, None, endpoint_id)
    return _run_handlers(state, session, event, endpoint, None)


def process_stored(
    state: State, event_id: str, *, force: bool = False, dead: bool = False
) -> Result:
    """Run the handlers of a stored event: the worker's and ``reprocess``'s entry point.

    Locks the row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two workers never run the
    same event at once). An event the pipeline is done with (processed, ignored, dead) is
    skipped (``duplicate``) unless ``force`` is set; ``dead`` runs dead events too (what
    ``reprocess --failed`` does once their cause is fixed). An event locked by another worker
    is ``busy``: try again later, it is either processed by then or free again (a worker that
    died drops its lock).
    """
    session = state.db.session
    query = sa.select(event_table).where(event_table.c.id == event_id)
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        query = query.with_for_update(skip_locked=True)
    try:
        row = session.execute(query).first()
        if row is None and postgres:
            exists = session.execute(
                sa.select(event_table.c.status).where(event_table.c.id == event_id)
            ).first()
            if exists is not None:
                session.rollback()
                return Result(BUSY, "being processed by another worker", event_id)
        if row is None:
            session.rollback()
            return Result(MISSING, f"no stored event {event_id}", event_id)
        skip = () if force else tuple(s for s in FINAL_STATUSES if not (dead and s == DEAD))
        if row.status in skip:
            session.rollback()
            return Result(DUPLICATE, event_id=event_id)
        endpoint = None
        if row.endpoint_id is not None:
            endpoint = endpoint_by_id(session, row.endpoint_id)
        if not force and _paused(state, endpoint):
            session.rollback()
            return Result(PAUSED, "paused: it runs on resume", event_id)
    except DBAPIError as exc:
        session.rollback()
        if not _unavailable(exc):
            raise
        log.warning("database unavailable while loading event %s: %s", event_id, exc)
        return Result(UNAVAILABLE, _UNAVAILABLE_REASON, event_id)
    event = _bind(state, Event.from_row(row, endpoint), endpoint)
    return _run_handlers(state, session, event, endpoint, None, stored=True, skip=skip)
