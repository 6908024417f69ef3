"""What one attempt leaves in the database: the event row and the delivery row.

Every path of the pipeline ends in :func:`write_attempt`, the one function that records what
an attempt came to — the event's status when the attempt did not process it, then the
delivery row — and commits. Every event row is inserted by :func:`insert_event`, with the one
fallback for databases without ``ON CONFLICT``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from flask import current_app
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from ..errors import Retry
from ..event_fields import indexed_object_id
from ..outcomes import DEAD, FAILED, FINAL_STATUSES, IGNORED, PENDING, REJECTED, RETRYING
from ..utils import schema_missing, upgrade_hint
from .guard import redacted
from .storage import (
    attempts_of,
    insert_delivery,
    insert_tracked_event,
    set_attempt,
    set_handlers,
)

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from ..events import Event
    from ..state import State
    from .endpoint_cache import EndpointInfo

log = logging.getLogger("flask_stripe_hooks")

#: What a delivery or run answers when the database is away (Stripe, or the queue, retries).
UNAVAILABLE_REASON = "database unavailable, retry later"
#: Attempts that did not process the event: they count towards ``STRIPE_HOOKS_MAX_ATTEMPTS``.
_COUNTED = (FAILED, RETRYING, IGNORED)


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

    def kept_body(self, outcome: str) -> bytes:
        """The body as stored for ``outcome`` (``STRIPE_HOOKS_STORE_BODY``)."""
        return self.body if self.keep is None or outcome in self.keep else b""

    def size(self, outcome: str) -> int:
        """About what the row takes for ``outcome``: its body and headers, in bytes."""
        headers = sum(len(name) + len(value) for name, value in self.headers.items())
        return len(self.kept_body(outcome)) + headers

    def values(
        self,
        outcome: str,
        *,
        event_id: str | None = None,
        error: str | None = None,
        traceback: str | None = None,
        handlers: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        return {
            "endpoint_id": self.endpoint.id,
            "received_at": self.received_at,
            # Cut to the column: behind a ProxyFix that trusts too many hops, the
            # client writes this value.
            "remote_addr": self.remote_addr[:64] if self.remote_addr else None,
            "headers": self.headers,
            "body": self.kept_body(outcome),
            "valid": outcome != REJECTED,
            "outcome": outcome,
            "error": error,
            "traceback": traceback,
            "event_id": event_id,
            "duration_ms": (time.perf_counter() - self.started) * 1000.0,
            "handlers": handlers,
        }


@dataclass(frozen=True, slots=True)
class Taken:
    """A stored event as a re-run took it: its status and attempts before the run."""

    status: str
    attempts: int

    def died(self, max_attempts: int) -> bool:
        """It had died before this run: it was ``dead``, or it is a dead event queued again
        (``pending`` with its attempts spent)."""
        return self.status == DEAD or (self.status == PENDING and self.attempts >= max_attempts)


def notify(signal: Any, **kwargs: Any) -> None:
    """Send a lifecycle signal; a receiver that raises is logged, never the pipeline's
    business."""
    if signal.receivers:
        try:
            signal.send(current_app._get_current_object(), **kwargs)  # type: ignore[attr-defined]
        except Exception:
            log.exception("receiver of signal %r failed", signal.name)


def unavailable(exc: BaseException) -> bool:
    """The database could not be reached (or dropped the connection): try again later."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def no_schema(state: State, exc: BaseException) -> bool:
    """``exc`` says this extension's tables (or a column) are missing: log what to run, at
    most once a minute (:class:`~.guard.Notices`); the delivery is answered 503, so Stripe
    retries once the migration has run."""
    said = schema_missing(exc)
    if said is None:
        return False
    state.notices.schema.add(upgrade_hint(said))
    return True


def event_row(state: State, event: Event, endpoint_id: int | None, now: datetime) -> dict[str, Any]:
    """The columns of an event's row that come from the event (its data redacted as
    ``STRIPE_HOOKS_REDACT`` says) and from this attempt."""
    redact = state.redact
    return {
        "id": event.id,
        "type": event.type,
        "livemode": event.livemode,
        "account": event.account,
        "context": event.context,
        "api_version": event.api_version,
        "created": event.created_at,
        "data": event.data if redact is None else redacted(redact, event.data),
        "request_id": event.request_id,
        "idempotency_key": event.idempotency_key,
        "endpoint_id": endpoint_id,
        "received_at": now,
        "twin_id": event.snapshot_event,
        "object_id": indexed_object_id(event.object_id),
    }


def insert_event(
    state: State,
    session: Session,
    event: Event,
    endpoint_id: int | None,
    now: datetime,
    *,
    track: bool = False,
    **columns: Any,
) -> tuple[bool, str | None]:
    """``INSERT`` the event row with ``columns`` (its status and counts), unless a row with
    its id exists. ``track``: record it as its object's newest event in the same transaction
    (the same statement on PostgreSQL). Returns whether the row is new and, when tracked,
    the newer event's id if this one is stale. On a database without ``ON CONFLICT`` an
    existing row raises ``IntegrityError``: the transaction is rolled back here."""
    row = {**event_row(state, event, endpoint_id, now), **columns}
    try:
        return insert_tracked_event(session.connection(), row, track)
    except IntegrityError:
        session.rollback()
        return False, None


def _count(
    state: State,
    session: Session,
    event: Event,
    endpoint_id: int | None,
    status: str,
    error: str | None,
    traceback: str | None,
    retry: Retry | None,
    taken: Taken | None,
    handlers: list[dict[str, Any]] | None,
) -> tuple[str, float | None]:
    """Count an attempt that did not process the event on its row, with its error:
    ``dead`` once ``STRIPE_HOOKS_MAX_ATTEMPTS`` are spent, and a dead event run again stays
    dead. An event finished meanwhile by a concurrent attempt stays as it is; a re-run
    (``taken``) tells that from the row it took, which it records over whatever its status
    was. ``handlers``: what the attempt ran, when it was not a delivery. Returns the status
    stored and, for a retry, its delay."""
    now = datetime.now(timezone.utc)
    died = taken is not None and taken.died(state.max_attempts)
    for _ in range(2):  # a row inserted meanwhile by a concurrent attempt: count on it
        current = attempts_of(session, event.id)
        attempts = 1 if current is None else current[1] + 1
        mine = taken is not None and current == (taken.status, taken.attempts)
        if current is not None and current[0] in FINAL_STATUSES and not mine:
            if handlers is not None:  # it stays as it is; what this attempt ran is kept
                set_handlers(session, event.id, handlers)
            return current[0], None
        stored, delay, next_at = status, None, None
        if status in (FAILED, RETRYING) and (attempts >= state.max_attempts or died):
            stored = DEAD
        if stored == RETRYING and retry is not None:
            delay = retry.delay(attempts, state.retry_max)
            next_at = now + timedelta(seconds=delay)
        if current is not None:
            set_attempt(session, event.id, stored, attempts, error, traceback, next_at, handlers)
            return stored, delay
        new, _ = insert_event(
            state,
            session,
            event,
            endpoint_id,
            now,
            status=stored,
            attempts=1,
            last_error=error,
            last_traceback=traceback,
            next_attempt_at=next_at,
            handlers=handlers,
        )
        if new:
            return stored, delay
    return status, None


def write_attempt(
    state: State,
    session: Session,
    outcome: str,
    delivery: Delivery | None,
    event: Event | None = None,
    *,
    endpoint_id: int | None = None,
    error: str | None = None,
    traceback: str | None = None,
    retry: Retry | None = None,
    taken: Taken | None = None,
    connection: sa.Connection | None = None,
    handlers: list[dict[str, Any]] | None = None,
) -> tuple[str, float | None]:
    """Record what one attempt came to, and commit: for an attempt that did not process
    the event (``failed``, ``retrying``, ``ignored``) its count and status on the event row,
    then the delivery row (when the attempt was a delivery) with ``outcome``.

    ``handlers``: the record of the handlers the attempt ran (``Registry.dispatch``'s
    ``ran``), kept on the delivery row, or on the event row for an attempt that was not a
    delivery (a worker, ``reprocess``): with the rest of the row, never a statement more
    on a delivery's happy path.

    Returns the event's status as stored (``dead`` once the attempts are spent; the status
    a concurrent attempt finished it with) and, for a retry, the seconds until it is due.
    ``taken``: for a re-run, the row as it took it. ``connection``: the transaction's
    connection, when the caller holds it already.
    """
    stored: str = outcome
    delay: float | None = None
    on_event = handlers if delivery is None else None
    if outcome in _COUNTED and event is not None:
        stored, delay = _count(
            state, session, event, endpoint_id, outcome, error, traceback, retry, taken, on_event
        )
    elif on_event is not None and event is not None:
        set_handlers(session, event.id, on_event)
    if delivery is not None:
        if connection is None or connection.closed:  # none yet, or a handler ended it
            connection = session.connection()
        values = delivery.values(
            outcome,
            event_id=event.id if event else None,
            error=error,
            traceback=traceback,
            handlers=handlers,
        )
        insert_delivery(connection, values)
    session.commit()
    return stored, delay


def write_failure(
    state: State,
    session: Session,
    outcome: str,
    delivery: Delivery | None,
    event: Event,
    endpoint_id: int | None,
    error: str | None,
    **kwargs: Any,
) -> tuple[str, float | None]:
    """After a rollback: :func:`write_attempt` in a new, short transaction, which never
    re-adds the rolled-back objects. A failure to write it is logged; the status is then
    the one meant."""
    session.rollback()
    try:
        return write_attempt(
            state, session, outcome, delivery, event, endpoint_id=endpoint_id, error=error, **kwargs
        )
    except Exception:
        session.rollback()
        log.exception("could not record the outcome of event %s", event.id)
        return outcome, None
