"""Retention: what ``prune`` deletes when events and deliveries are old enough, what
``erase`` deletes for one customer (a data subject's request), and ``fill-object-ids``, which
gives events stored before their object id was kept that id.

Both work in short transactions on the app's ``db.session``; ``--dry-run`` counts what the
real run would change, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from . import paging
from .errors import StripeHooksError
from .event_fields import indexed_object_id, object_id_of
from .models import delivery_table, event_table, object_table
from .outcomes import DEAD, FAILED, IGNORED, PENDING, PROCESSED, RETRYING
from .utils import format_duration, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .state import State

#: Stripe retries a delivery for up to 3 days; an event pruned sooner could run twice.
STRIPE_RETRIES_FOR = timedelta(days=3)
#: Rows deleted (or cleared) per transaction by :func:`prune`.
PRUNE_BATCH = 2000
#: ``prune --dry-run`` counts each kind of row up to this (and shows "100,000+").
PRUNE_COUNT_CAP = 100_000


def prune_options(
    older_than: timedelta, bodies_older_than: timedelta | None, keep_failed: bool = False
) -> dict[str, Any]:
    """Check ``prune``'s ages (raising :class:`~flask_stripe_hooks.errors.StripeHooksError`
    with what to change) and return them as its keyword arguments."""
    if older_than < STRIPE_RETRIES_FOR:
        raise StripeHooksError(
            "Stripe retries a delivery for up to 3 days; pruning events younger than that"
            " lets a late retry run its handlers again. Use --older-than 3d or more."
        )
    if bodies_older_than is not None and bodies_older_than > older_than:
        raise StripeHooksError(
            "--bodies-older-than is longer than --older-than: those rows are deleted whole"
            " before their bodies would be cleared. Use a shorter age, such as 7d."
        )
    return {
        "older_than": older_than,
        "bodies_older_than": bodies_older_than,
        "keep_failed": keep_failed,
    }


def prune_line(found: dict[str, int], options: dict[str, Any], dry_run: bool) -> str:
    """``prune: deleted 3 delivery(ies) and 1 event(s) received more than 30d ago``."""

    def n(name: str) -> str:
        return paging.count_label(found[name], PRUNE_COUNT_CAP) if dry_run else str(found[name])

    line = (
        f"prune: {'would delete' if dry_run else 'deleted'} {n('deliveries')} delivery(ies)"
        f" and {n('events')} event(s) received more than"
        f" {format_duration(options['older_than'])} ago"
    )
    if options.get("bodies_older_than") is not None:
        line += (
            f"; {'would clear' if dry_run else 'cleared'} the body of {n('bodies')} delivery(ies)"
            f" received more than {format_duration(options['bodies_older_than'])} ago"
        )
    return line


def prune(
    state: State,
    *,
    older_than: timedelta,
    keep_failed: bool = False,
    bodies_older_than: timedelta | None = None,
    dry_run: bool = False,
    batch: int | None = None,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, int]:
    """Delete deliveries and finished events received more than ``older_than`` ago, and
    clear the ``body`` and ``headers`` of deliveries older than ``bodies_older_than``.

    Pending and retrying events are never deleted (their handlers have not run), nor their
    deliveries; with ``keep_failed``, failed and dead events and their deliveries stay
    too. Returns ``{"deliveries": n, "events": n, "bodies": n}``.

    Rows go in batches of ``batch`` (:data:`PRUNE_BATCH`), walked in ``(received_at, id)``
    order, one short transaction each, so no lock is held for long and a table of millions
    is never read whole at once; ``progress(n)`` is called after each batch. With
    ``dry_run`` nothing changes and each figure is a capped count: :data:`PRUNE_COUNT_CAP`
    + 1 means "more".
    """
    now = utcnow()
    cutoff = now - older_than
    # Pending and retrying events have handlers still to run; failed and dead ones may be
    # wanted for a re-run (--keep-failed).
    kept = [PENDING, RETRYING, FAILED, DEAD] if keep_failed else [PENDING, RETRYING]
    gone = [PROCESSED, IGNORED] if keep_failed else [PROCESSED, IGNORED, FAILED, DEAD]
    d, e = delivery_table, event_table
    held = sa.exists().where(e.c.id == d.c.event_id, e.c.status.in_(kept))
    work: dict[str, tuple[sa.Table, list[Any], Any]] = {
        "deliveries": (d, [d.c.received_at < cutoff, ~held], d.delete()),
        "events": (e, [e.c.received_at < cutoff, e.c.status.in_(gone)], e.delete()),
    }
    if bodies_older_than is not None:
        work["bodies"] = (
            d,
            [
                d.c.received_at < now - bodies_older_than,
                sa.func.length(d.c.body) > 0,
                # Not the rows this run deletes whole (so the dry run counts what is cleared).
                sa.or_(d.c.received_at >= cutoff, held),
            ],
            d.update().values(body=b"", headers={}),
        )
    found = {"deliveries": 0, "events": 0, "bodies": 0}
    for name, (table, where, change) in work.items():
        if dry_run:
            # In index order, as the prune walks: the planner then stops at the cap.
            query = sa.select(table.c.id).where(*where).order_by(*_key_order(table))
            found[name] = paging.capped_count(state.db.session, query, table.c.id, PRUNE_COUNT_CAP)
        else:
            size = batch or PRUNE_BATCH
            found[name] = _in_batches(state, table, where, change, size, progress)
    state.db.session.rollback()
    return found


def _in_batches(
    state: State,
    table: sa.Table,
    where: list[Any],
    change: Any,
    batch: int,
    progress: Callable[[int], Any] | None,
) -> int:
    """Apply ``change`` (a DELETE or UPDATE) to the rows matching ``where``, ``batch`` rows
    at a time in ``(received_at, id)`` order; one commit per batch."""
    session = state.db.session
    order = _key_order(table)
    key = sa.tuple_(*order)
    last: tuple[Any, Any] | None = None
    total = 0
    while True:
        query = sa.select(*order).where(*where).order_by(*order).limit(batch)
        if last is not None:
            query = query.where(key > last)
        rows = session.execute(query).all()
        if not rows:
            return total
        ids = [row.id for row in rows]
        # The conditions again: an event reprocessed meanwhile (pending again) stays.
        session.execute(change.where(table.c.id.in_(ids), *where))
        session.commit()
        last = (rows[-1].received_at, rows[-1].id)
        total += len(ids)
        if progress is not None:
            progress(len(ids))


def _key_order(table: sa.Table) -> tuple[Any, Any]:
    return (table.c.received_at, table.c.id)


def erase_customer(session: Session, customer: str, *, dry_run: bool = False) -> tuple[int, int]:
    """Delete, in one transaction, the events about ``customer`` (``data.object.id`` or
    ``data.object.customer``), their deliveries and their rows in the object tracking table.
    Returns ``(events, deliveries)``; ``dry_run`` counts them and deletes nothing."""
    obj = event_table.c.data["object"]
    about = sa.or_(obj["id"].as_string() == customer, obj["customer"].as_string() == customer)
    ids = sa.select(event_table.c.id).where(about)
    try:
        events = session.execute(sa.select(sa.func.count()).select_from(ids.subquery())).scalar()
        deliveries = session.execute(
            sa.select(sa.func.count()).where(delivery_table.c.event_id.in_(ids))
        ).scalar()
        if dry_run:
            session.rollback()
        else:
            session.execute(delivery_table.delete().where(delivery_table.c.event_id.in_(ids)))
            session.execute(
                object_table.delete().where(
                    sa.or_(object_table.c.event_id.in_(ids), object_table.c.id == customer)
                )
            )
            session.execute(event_table.delete().where(about))
            session.commit()
    except Exception:
        session.rollback()
        raise
    return int(events or 0), int(deliveries or 0)


#: Events read (and updated) per transaction by :func:`fill_object_ids`.
FILL_BATCH = 1000


def without_object_id(state: State) -> int:
    """How many stored events have no object id yet (a count over the whole table)."""
    query = sa.select(sa.func.count()).where(event_table.c.object_id.is_(None))
    try:
        return int(state.db.session.execute(query).scalar() or 0)
    finally:
        state.db.session.rollback()


def fill_object_ids(
    state: State, *, batch: int = FILL_BATCH, progress: Callable[[int], Any] | None = None
) -> int:
    """Give each stored event without an object id the id of the object it is about
    (``data.object.id``, a thin event's ``related_object.id``), as new events get it, so an
    object's history lists them too. Walks the table in id order, ``batch`` rows per short
    transaction, so it runs beside the app; ``progress(n)`` after each batch with the rows
    read. Events about no object stay without one. Returns how many were filled."""
    session = state.db.session
    e = event_table
    update = (
        e.update()
        .where(e.c.id == sa.bindparam("event_id"), e.c.object_id.is_(None))
        .values(object_id=sa.bindparam("found"))
    )
    last, filled = None, 0
    while True:
        query = sa.select(e.c.id, e.c.data).where(e.c.object_id.is_(None)).order_by(e.c.id)
        if last is not None:
            query = query.where(e.c.id > last)
        rows = session.execute(query.limit(batch)).all()
        if not rows:
            session.rollback()
            return filled
        found = [
            {"event_id": row.id, "found": object_id}
            for row in rows
            if (object_id := indexed_object_id(object_id_of(row.data))) is not None
        ]
        if found:
            session.execute(update, found)
        session.commit()
        last, filled = rows[-1].id, filled + len(found)
        if progress is not None:
            progress(len(rows))
