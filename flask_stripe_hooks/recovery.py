"""Recovery: the work behind ``process-pending``, ``reprocess``, ``pause`` and ``resume``,
``events``, and the admin's counts and "process again" (``fetch-missed`` is
:mod:`flask_stripe_hooks.backfill`).

The CLI and the admin are thin callers of these functions, and these are thin callers of
:mod:`flask_stripe_hooks.pipeline`: nothing here runs a handler any other way.

Functions that work through many events take an iterable of ids (the CLI passes a
``click.progressbar``) and process each in a fresh app context, so one event's rollback
never touches another's and the session does not grow with the run.
"""

from __future__ import annotations

import logging
import uuid as uuid_mod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import current_app

from . import audit, event_types, paging
from .models import endpoint_table, event_table
from .outcomes import (
    BUSY,
    DEAD,
    DUPLICATE,
    EVENT_STATUSES,
    FAILED,
    FINAL_STATUSES,
    IGNORED,
    MISSING,
    PAUSED,
    PENDING,
    PROCESSED,
    QUEUED,
    RETRYING,
    TWIN,
    UNAVAILABLE,
    Result,
)
from .pipeline import hand_over, process_stored
from .utils import utcnow

if TYPE_CHECKING:
    from .state import State

log = logging.getLogger("flask_stripe_hooks")

#: Outcomes that leave an event not run: listed with their reason, counted as failures.
_PROBLEMS = (FAILED, DEAD, MISSING)


@dataclass
class Summary:
    """How many events ended in each outcome (``processed``, ``duplicate``, ``failed``,
    ``queued``, ``busy``, ``missing``)."""

    counts: dict[str, int] = field(default_factory=dict)
    #: ``(event id, reason)`` of each event that failed or was not found.
    problems: list[tuple[str, str]] = field(default_factory=list)
    #: The results of events to try again later: failed, busy, retrying, or the database away.
    later: list[Result] = field(default_factory=list)

    def add(self, result: Result) -> None:
        # An event the database (or the queue) was not there for is counted as failed: to
        # the person running the command, both mean "run it again".
        outcome = FAILED if result.outcome == UNAVAILABLE else result.outcome
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if outcome in _PROBLEMS and result.event_id:
            self.problems.append((result.event_id, result.reason or outcome))
        if not result.ok and result.outcome != MISSING and result.event_id:
            self.later.append(result)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        return sum(self.counts.get(outcome, 0) for outcome in _PROBLEMS)

    def line(self) -> str:
        """``12 processed, 1 failed`` (outcomes with a count only), or ``nothing to do``."""
        order = (
            PROCESSED,
            QUEUED,
            PAUSED,
            DUPLICATE,
            RETRYING,
            IGNORED,
            BUSY,
            FAILED,
            DEAD,
            MISSING,
        )
        parts = [f"{self.counts[k]} {k}" for k in order if self.counts.get(k)]
        parts += [f"{n} {k}" for k, n in self.counts.items() if k not in order]
        return ", ".join(parts) or "nothing to do"


# -- counts (admin) ------------------------------------------------------------------------


def counts(state: State) -> dict[str, int]:
    """Events by status, and events received in the last 24 hours, each counted up to
    :data:`~.paging.COUNT_CAP` + 1 (which the admin shows as "1,000+").

    Keys: every status (``pending``: stored, waiting for a worker; ``failed``, ``processed``,
    ``retrying``, ``ignored``, ``dead``), ``last_24h`` and ``failed_24h``. No count reads
    more than the cap's worth of an index range (``(status, received_at, id)`` or
    ``(received_at, id)``), so none grows with history or with traffic.
    """
    session = state.db.session
    recent = event_table.c.received_at >= utcnow() - timedelta(hours=24)
    wheres = {status: [event_table.c.status == status] for status in EVENT_STATUSES}
    wheres["last_24h"] = [recent]
    wheres["failed_24h"] = [event_table.c.status == FAILED, recent]
    return {
        key: paging.capped_count(
            session, sa.select(event_table.c.id).where(*where), event_table.c.id
        )
        for key, where in wheres.items()
    }


# -- selecting events ----------------------------------------------------------------------

#: The order events are drained in: Stripe's ``created`` (so each object's events run oldest
#: first), those without one last, then arrival.
_IN_ORDER = (
    event_table.c.created.is_(None),
    event_table.c.created,
    event_table.c.received_at,
    event_table.c.id,
)


def event_filter(
    *,
    type_prefix: str | None = None,
    status: str | None = None,
    livemode: bool | None = None,
    account: str | None = None,
    object_id: str | None = None,
) -> list[Any]:
    """The conditions of a list of events (the CLI's, the admin's), each served by an index
    with the list's order (``received_at``, ``id``): a type or types below it, a status, a
    mode, one connected account's events (``(account, received_at, id)``), the object the
    events are about (``(object_id, received_at, id)``)."""
    e = event_table.c
    where = [event_types.type_condition(e.type, event_types.normalize_prefix(type_prefix))]
    if status:
        where.append(e.status == status)
    if livemode is not None:
        where.append(e.livemode.is_(livemode))
    if account:
        where.append(e.account == account)
    if object_id:
        where.append(e.object_id == object_id)
    return where


def recent_events(
    state: State, *, limit: int = 20, before: str | None = None, **filters: Any
) -> paging.Page:
    """A page of stored events (rows of ``event_table``) matching :func:`event_filter`'s
    ``filters`` (``type_prefix``, ``status``, ``account``, ``object_id``...), newest first,
    older than the cursor ``before``: ``flask stripe-hooks events``. Each filter is an index
    range, whatever the history.

    Raises :class:`~flask_stripe_hooks.errors.BadCursor` for a cursor that cannot be read.
    """
    query = sa.select(event_table).where(*event_filter(**filters))
    session = state.db.session
    try:
        return paging.keyset_page(
            session,
            query,
            event_table.c.received_at,
            event_table.c.id,
            per_page=limit,
            before=before,
            rows=True,
        )
    finally:
        session.rollback()


def pending_ids(state: State, older_than: timedelta) -> list[str]:
    """Pending events received more than ``older_than`` ago, and ``retrying`` events that are
    due, oldest first: the ones whose queue message was lost (or whose worker died before its
    retry), and the ones a handler asked to run again later."""
    now = utcnow()
    query = (
        sa.select(event_table.c.id)
        .where(
            sa.or_(
                sa.and_(
                    event_table.c.status == PENDING,
                    event_table.c.received_at <= now - older_than,
                ),
                sa.and_(event_table.c.status == RETRYING, event_table.c.next_attempt_at <= now),
            )
        )
        .order_by(*_IN_ORDER)
    )
    ids = list(state.db.session.execute(query).scalars())
    state.db.session.rollback()
    return ids


def runnable(state: State, event_ids: Iterable[str]) -> list[str]:
    """Of these events, the stored ones the pipeline is not done with, oldest ``created``
    first: the order a batch from the queue runs in. One query; the finished ones (a
    redelivered message, a sweeper that came first) cost nothing more."""
    wanted = list(event_ids)
    if not wanted:
        return []
    query = (
        sa.select(event_table.c.id)
        .where(event_table.c.id.in_(wanted), event_table.c.status.not_in(FINAL_STATUSES))
        .order_by(*_IN_ORDER)
    )
    ids = list(state.db.session.execute(query).scalars())
    state.db.session.rollback()
    return ids


def failed_ids(
    state: State,
    since: timedelta | None = None,
    type_prefix: str | None = None,
    *,
    limit: int | None = None,
    **filters: Any,
) -> list[str]:
    """Failed and dead events, oldest first (the first ``limit``), received within
    ``since``, of ``type_prefix`` and matching :func:`event_filter`'s other ``filters``
    (``livemode``, ``account``, ``object_id``; ``status`` narrows to one of the two)."""
    query = _failed(since, type_prefix, **filters).order_by(*_IN_ORDER).limit(limit)
    ids = list(state.db.session.execute(query).scalars())
    state.db.session.rollback()
    return ids


def failed_count(state: State, **filters: Any) -> int:
    """How many events :func:`failed_ids` would list, counted up to
    :data:`~.paging.COUNT_CAP` + 1."""
    count = paging.capped_count(state.db.session, _failed(None, **filters), event_table.c.id)
    state.db.session.rollback()
    return count


def _failed(since: timedelta | None, type_prefix: str | None = None, **filters: Any) -> Any:
    query = sa.select(event_table.c.id).where(
        event_table.c.status.in_((FAILED, DEAD)),
        *event_filter(type_prefix=type_prefix, **filters),
    )
    if since is not None:
        query = query.where(event_table.c.received_at >= utcnow() - since)
    return query


def describe(state: State, ids: Iterable[str]) -> list[tuple[str, str, str, int]]:
    """``(id, type, status, attempts)`` of stored events, for ``--dry-run`` listings."""
    wanted = list(ids)
    found: dict[str, tuple[str, str, str, int]] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        query = sa.select(
            event_table.c.id, event_table.c.type, event_table.c.status, event_table.c.attempts
        ).where(event_table.c.id.in_(chunk))
        for row in state.db.session.execute(query):
            found[row.id] = (row.id, row.type, row.status, row.attempts)
    state.db.session.rollback()
    return [found[i] for i in wanted if i in found]


# -- processing them -----------------------------------------------------------------------


def process_events(
    state: State, event_ids: Iterable[str], *, force: bool = False, dead: bool = False
) -> Summary:
    """Run stored events through their handlers now, one transaction (and one fresh app
    context) each. ``force`` runs events already processed again; ``dead`` runs dead ones."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    state.db.session.rollback()  # hold no transaction (or lock) while events run
    summary = Summary()
    for event_id in event_ids:
        with app.app_context():
            summary.add(process_stored(state, event_id, force=force, dead=dead))
    return summary


def enqueue_events(state: State, event_ids: Iterable[str]) -> Summary:
    """Queue mode: mark the events pending and hand each to the queue callback, so a
    worker runs them (again, if they were processed)."""
    if state.event_callback is None:
        raise RuntimeError(
            "No queue: STRIPE_HOOKS_EVENT_CALLBACK is not set, so events run in-process."
        )
    summary = Summary()
    for event_id in event_ids:
        summary.add(_enqueue_one(state, event_id))
    return summary


def _enqueue_one(state: State, event_id: str) -> Result:
    """Mark one event pending, commit, and hand it to the queue callback."""
    session = state.db.session
    done = session.execute(
        event_table.update()
        .where(event_table.c.id == event_id, event_table.c.status != TWIN)
        .values(status=PENDING)
    ).rowcount
    twin_of = None
    if not done:
        twin_of = session.execute(
            sa.select(event_table.c.twin_id).where(event_table.c.id == event_id)
        ).scalar()
    session.commit()
    if twin_of is not None:  # its twin ran the business event: that is the one to run
        return Result(TWIN, f"twin of {twin_of}: it ran the handlers", event_id)
    if not done:
        return Result(MISSING, f"no stored event {event_id}", event_id)
    failed = hand_over(state, event_id)
    if failed is not None:
        return Result(UNAVAILABLE, f"queue unavailable, it stays pending: {failed}", event_id)
    return Result(QUEUED, event_id=event_id)


def process_failed(state: State, event_ids: Iterable[str]) -> Summary:
    """Failed and dead events again (the admin's bulk "process again"): handed to the queue
    in queue mode, otherwise run now; events processed meanwhile are skipped."""
    if state.event_callback is not None:
        return enqueue_events(state, event_ids)
    return process_events(state, event_ids, dead=True)


def process_again(state: State, event_id: str) -> Result:
    """The admin's "process again": through the queue in queue mode, otherwise now."""
    if state.event_callback is not None:
        return _enqueue_one(state, event_id)
    return process_stored(state, event_id, force=True)


# -- pause and resume ----------------------------------------------------------------------


def set_paused(state: State, paused: bool, uuids: Iterable[str] = ()) -> int:
    """Pause (or resume) these endpoints, every endpoint when none is named; how many
    changed. Unknown uuids raise ``ValueError``. Resuming runs nothing by itself: the pending
    events are then run (``flask stripe-hooks resume`` does) in :func:`pending_ids` order."""
    try:
        wanted = [uuid_mod.UUID(str(value)) for value in uuids]
    except ValueError:
        raise ValueError(f"Not endpoint uuids: {' '.join(map(str, uuids))}.") from None
    session = state.db.session
    query = sa.select(endpoint_table.c.id, endpoint_table.c.uuid, endpoint_table.c.paused)
    if wanted:
        query = query.where(endpoint_table.c.uuid.in_(wanted))
    found = list(session.execute(query))
    missing = [str(u) for u in wanted if u not in {row.uuid for row in found}]
    if missing:
        session.rollback()
        raise ValueError(f"No endpoint {', '.join(missing)}.")
    rows = [row for row in found if row.paused != paused]
    if rows:
        ids = [row.id for row in rows]
        session.execute(
            endpoint_table.update().where(endpoint_table.c.id.in_(ids)).values(paused=paused)
        )
    for row in rows:
        audit.record(
            session, row, "paused" if paused else "resumed", {"paused": [not paused, paused]}
        )
    session.commit()
    return len(rows)
