"""All of the pipeline's SQL: its INSERTs compiled once per database dialect and run on the
session's connection, tracking the newest event per object, claiming (with locking and
reading, for a stored event) and marking an event, and settling which of two twins (a
snapshot event and its thin twin) runs.

A cached SQLAlchemy Core statement still costs, on every execution, a cache-key look-up, the
construction of its parameters and its result, as much CPU as the round trip to the database
(docs/performance.md has the figures). The pipeline's inserts never change, so each
:class:`Insert` compiles its statement once per dialect (SQLAlchemy's own compiler, with each
column's bind processing) and then runs it with ``Connection.exec_driver_sql``: the same
transaction, the same error translation (``IntegrityError``, invalidated connections) and the
same ``before_cursor_execute`` events as any other statement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from ..models import delivery_table, endpoint_table, event_table, object_table
from ..outcomes import BUSY, DUPLICATE, FINAL_STATUSES, MISSING, PROCESSED, TWIN

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

_Compiled = tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...], bool]

_ON_CONFLICT: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
#: Whether ``ON CONFLICT DO NOTHING`` is used where the database has it (see
#: :func:`without_on_conflict`).
_on_conflict = True


@contextmanager
def without_on_conflict() -> Iterator[None]:
    """For tests: skip existing rows as a database without ``ON CONFLICT`` does, through the
    primary key's ``IntegrityError`` and a rollback, so that path is tested on PostgreSQL and
    SQLite too."""
    global _on_conflict
    _on_conflict = False
    try:
        yield
    finally:
        _on_conflict = True


class Insert:
    """``INSERT INTO table`` of the given values, compiled once per dialect and key set.

    ``expressions`` replace a column's bound value by a SQL expression; the expression's own
    bound parameters are read from the values by name. Every column with a default on the
    Python side must be given a value (they are not applied here). With ``skip_existing``, a
    row whose key exists already is skipped (``ON CONFLICT DO NOTHING`` on PostgreSQL and
    SQLite; elsewhere the database raises ``IntegrityError``). With ``newer_only`` (a column;
    PostgreSQL and SQLite only), an existing row is updated when that column's new value is at
    least its stored one, and left alone (0 rows) when it is older.
    """

    def __init__(
        self,
        table: sa.Table,
        *,
        skip_existing: bool = False,
        newer_only: str | None = None,
        **expressions: Any,
    ) -> None:
        self.table = table
        self.skip_existing = skip_existing
        self.newer_only = newer_only
        self.expressions = expressions
        self._compiled: dict[tuple[type, tuple[str, ...], bool], _Compiled] = {}

    def _statement(self, dialect: sa.Dialect, keys: tuple[str, ...]) -> Any:
        values: dict[str, Any] = {
            key: sa.bindparam(key, type_=self.table.c[key].type)
            for key in keys
            if key in self.table.c and key not in self.expressions
        }
        values.update(self.expressions)
        statement = self.table.insert()
        if self.newer_only and dialect.name in _ON_CONFLICT:
            upsert = _ON_CONFLICT[dialect.name](self.table)
            column, key = self.newer_only, [c.name for c in self.table.primary_key]
            statement = upsert.on_conflict_do_update(
                index_elements=key,
                set_={k: upsert.excluded[k] for k in keys if k not in key},
                where=self.table.c[column] <= upsert.excluded[column],
            )
        elif self.skip_existing and _on_conflict and dialect.name in _ON_CONFLICT:
            statement = _ON_CONFLICT[dialect.name](self.table).on_conflict_do_nothing()
        return statement.inline().values(values)

    def _compile(self, dialect: sa.Dialect, keys: tuple[str, ...]) -> _Compiled:
        compiled = self._statement(dialect, keys).compile(dialect=dialect)
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(binds)
        missing = sorted(set(names) - set(keys))
        if missing:
            raise ValueError(f"INSERT INTO {self.table.name}: no value for {', '.join(missing)}")
        processors = tuple(
            binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
        )
        return compiled.string, names, processors, bool(compiled.positional)

    def __call__(self, connection: sa.Connection, values: Mapping[str, Any]) -> int:
        """Run it; the number of rows inserted (0: skipped, the key exists)."""
        return int(self.execute(connection, values).rowcount)

    def execute(self, connection: sa.Connection, values: Mapping[str, Any]) -> sa.CursorResult[Any]:
        """Run it; the driver's result."""
        dialect = connection.dialect
        key = (type(dialect), tuple(values), _on_conflict)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(dialect, key[1])
        sql, names, processors, positional = compiled
        params = [
            values[name] if processor is None else processor(values[name])
            for name, processor in zip(names, processors, strict=True)
        ]
        if positional:
            return connection.exec_driver_sql(sql, tuple(params))
        return connection.exec_driver_sql(sql, dict(zip(names, params, strict=True)))


insert_delivery = Insert(delivery_table)
#: The event row, unless one with its id exists (0 rows: it does). A conflict costs no rollback
#: on PostgreSQL and SQLite; on other databases it raises ``IntegrityError`` and the
#: transaction must be rolled back.
insert_event = Insert(event_table, skip_existing=True)


track_object = Insert(object_table, newer_only="created")


class _EventAndObject(Insert):
    """PostgreSQL: :data:`insert_event` and, in the same statement, the newest event of the
    event's object (its ``object_id`` column), when the event row is new: one round trip for
    both. It returns no row when the event's id exists, else the id of its object's newest
    event — this one's, or a strictly later one's (this event is stale)."""

    def _statement(self, dialect: sa.Dialect, keys: tuple[str, ...]) -> Any:
        inserted = (
            super()
            ._statement(dialect, keys)
            .returning(event_table.c.id, event_table.c.created, event_table.c.object_id)
            .cte("inserted")
        )
        upsert = postgresql.insert(object_table).from_select(
            ["id", "event_id", "created"],
            sa.select(inserted.c.object_id, inserted.c.id, inserted.c.created),
        )
        # The stored row wins only when strictly later (same-second events are both newest).
        stored, new = object_table.c, upsert.excluded
        kept = stored.created > new.created
        return upsert.on_conflict_do_update(
            index_elements=[stored.id],
            set_={
                "event_id": sa.case((kept, stored.event_id), else_=new.event_id),
                "created": sa.case((kept, stored.created), else_=new.created),
            },
        ).returning(stored.event_id)


_event_and_object = _EventAndObject(event_table, skip_existing=True)

#: The longest object id tracked. No Stripe id comes near it; an event about an object with a
#: longer one is stored and processed whole, untracked: it is never stale.
_TRACKED_LENGTH = cast(sa.String, object_table.c.id.type).length or 255


def insert_tracked_event(
    connection: sa.Connection, values: Mapping[str, Any], track: bool
) -> tuple[bool, str | None]:
    """:data:`insert_event`, and with ``track``, when the row is new and the event is about
    an object (``values["object_id"]``), :func:`track_newest` in the same transaction — in
    the same statement on PostgreSQL. Returns whether the row is new, and the newer event's
    id when this one is stale."""
    object_id = values["object_id"]
    if not track or object_id is None or values["created"] is None:
        return bool(insert_event(connection, values)), None
    if connection.dialect.name == "postgresql" and _on_conflict:
        row = _event_and_object.execute(connection, values).first()
        if row is None:
            return False, None
        return True, None if row[0] == values["id"] else str(row[0])
    if not insert_event(connection, values):
        return False, None
    return True, track_newest(connection, object_id, values["id"], values["created"])


def track_newest(
    connection: sa.Connection, object_id: str, event_id: str, created: datetime
) -> str | None:
    """Record ``event_id`` as the newest event applied to ``object_id``, unless an event with a
    strictly later ``created`` is recorded already: then return that event's id (this one is
    stale). The row stays locked until the transaction ends (PostgreSQL), so concurrent
    deliveries for one object are judged one after the other."""
    if len(object_id) > _TRACKED_LENGTH:
        return None
    values = {"id": object_id, "event_id": event_id, "created": created}
    if connection.dialect.name in _ON_CONFLICT:
        if track_object(connection, values):
            return None
        newer = sa.select(object_table.c.event_id).where(object_table.c.id == object_id)
        return connection.execute(newer).scalar()
    # Elsewhere: lock, then insert or update (a concurrent first insert fails the attempt).
    row = connection.execute(
        sa.select(object_table.c.event_id, object_table.c.created)
        .where(object_table.c.id == object_id)
        .with_for_update()
    ).first()
    if row is None:
        connection.execute(object_table.insert().values(values))
    elif row.created > created:
        return str(row.event_id)
    else:
        connection.execute(
            object_table.update().where(object_table.c.id == object_id).values(values)
        )
    return None


def mark_stale(
    connection: sa.Connection, event_id: str, newer_event_id: str, skipped: list[str]
) -> None:
    """Note on the event which handlers skipped it as stale, and the newer event."""
    connection.execute(
        event_table.update()
        .where(event_table.c.id == event_id)
        .values(stale={"newer_event_id": newer_event_id, "skipped": skipped})
    )


def _claimed(now: Any) -> dict[str, Any]:
    """What claiming an event writes on its row."""
    return {
        "status": PROCESSED,
        "attempts": event_table.c.attempts + 1,
        "processed_at": now,
        "last_error": None,
        "next_attempt_at": None,
        "last_traceback": None,
    }


def claim(
    session: Session, event_id: str, now: datetime, *, skip: tuple[str, ...] = FINAL_STATUSES
) -> bool:
    """Take a stored event for this transaction, marking it processed (a row lock on
    PostgreSQL until commit); not one whose status is in ``skip`` (by default, one the
    pipeline is done with). ``()`` takes any: an explicit re-process."""
    where = [event_table.c.id == event_id]
    if skip:
        where.append(event_table.c.status.not_in(skip))
    result = session.execute(event_table.update().where(*where).values(**_claimed(now)))
    return bool(result.rowcount)  # type: ignore[attr-defined]


class Took(NamedTuple):
    """What :func:`take` found. Claimed: ``row`` (the event's row as claimed), ``endpoint``
    (its endpoint's row, or None) and the event's ``status`` and ``attempts`` before the
    claim. Not claimed: ``why`` (``missing``, ``duplicate``, ``busy`` or ``twin``, with
    ``twin_id``)."""

    row: Any = None
    endpoint: Any = None
    why: str | None = None
    status: str = ""
    attempts: int = 0
    twin_id: str | None = None


def take(
    session: Session,
    event_id: str,
    now: datetime,
    skip: tuple[str, ...],
    endpoint_columns: tuple[sa.Column[Any], ...],
) -> Took:
    """Lock and :func:`claim` a stored event for this transaction, and read it with its
    endpoint's ``endpoint_columns``. Not one whose status is in ``skip`` (``duplicate``), nor
    a twin that ran nothing (``twin``: its twin is the one to run), nor one another
    transaction holds (``busy``; PostgreSQL, whose lock skips a locked row).

    On PostgreSQL one statement does it all (``UPDATE ... FROM`` a ``SELECT ... FOR UPDATE
    SKIP LOCKED`` of the event joined to its endpoint, ``RETURNING`` both and the event's
    status and attempts as they were), compiled once; a second one, when nothing was
    claimed, tells why.
    """
    if session.get_bind().dialect.name != "postgresql":
        row = session.execute(sa.select(event_table).where(event_table.c.id == event_id)).first()
        if row is None:
            return Took(why=MISSING)
        if row.status == TWIN:
            return Took(why=TWIN, twin_id=row.twin_id)
        if row.status in skip or not claim(session, event_id, now, skip=(*skip, TWIN)):
            return Took(why=DUPLICATE)
        endpoint: Any = None
        if row.endpoint_id is not None:
            query = sa.select(*endpoint_columns).where(endpoint_table.c.id == row.endpoint_id)
            endpoint = session.execute(query).first()
        return Took(row, endpoint, None, row.status, row.attempts)
    sql, fixed, order = _take_statement(session.get_bind().dialect, skip, endpoint_columns)
    params: Any = {**fixed, "event_id": event_id, "now": now}
    if order is not None:  # a driver with positional parameters
        params = tuple(params[name] for name in order)
    found = session.connection().exec_driver_sql(sql, params).first()
    if found is not None:
        values, endpoint = found._mapping, None
        if values["ep_id"] is not None:  # the event has an endpoint, and it still exists
            endpoint = SimpleNamespace(**{c.name: values[f"ep_{c.name}"] for c in endpoint_columns})
        return Took(found, endpoint, None, values["taken_status"], values["taken_attempts"])
    row = session.execute(
        sa.select(event_table.c.status, event_table.c.twin_id).where(event_table.c.id == event_id)
    ).first()
    if row is None:
        return Took(why=MISSING)
    if row.status == TWIN:
        return Took(why=TWIN, twin_id=row.twin_id)
    return Took(why=DUPLICATE if row.status in skip else BUSY)


_Taken = tuple[str, dict[str, Any], tuple[str, ...] | None]
_taken: dict[tuple[Any, ...], _Taken] = {}


def _take_statement(
    dialect: sa.Dialect, skip: tuple[str, ...], endpoint_columns: tuple[sa.Column[Any], ...]
) -> _Taken:
    """:func:`take`'s statement on PostgreSQL, compiled once per ``skip`` (as :class:`Insert`
    is, and for the same reason): its SQL, its fixed parameters (``event_id`` and ``now`` are
    given on each run) and, for a driver with positional parameters, their order."""
    key = (type(dialect), skip, tuple(c.name for c in endpoint_columns))
    found = _taken.get(key)
    if found is not None:
        return found
    ep = [column.label(f"ep_{column.name}") for column in endpoint_columns]
    locked = (
        sa.select(
            event_table.c.id.label("locked_id"),
            event_table.c.status.label("taken_status"),
            event_table.c.attempts.label("taken_attempts"),
            *ep,
        )
        .select_from(
            event_table.outerjoin(endpoint_table, endpoint_table.c.id == event_table.c.endpoint_id)
        )
        .where(event_table.c.id == sa.bindparam("event_id", None, type_=event_table.c.id.type))
        .with_for_update(of=event_table, skip_locked=True)
        .cte("locked")
    )
    where = [event_table.c.id == locked.c.locked_id, event_table.c.status.not_in((*skip, TWIN))]
    taken = (locked.c.taken_status, locked.c.taken_attempts)
    statement = (
        event_table.update()
        .where(*where)
        .values(**_claimed(sa.bindparam("now", None, type_=event_table.c.processed_at.type)))
        .returning(*event_table.c, *taken, *(locked.c[label.name] for label in ep))
    )
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    order = tuple(compiled.positiontup or ()) if compiled.positional else None
    found = _taken[key] = (compiled.string, dict(compiled.params), order)
    return found


def attempts_of(session: Session, event_id: str) -> tuple[str, int] | None:
    """``(status, attempts)`` of a stored event, locked for this transaction on PostgreSQL
    (a concurrent attempt's count waits for this one's); ``None``: not stored."""
    query = sa.select(event_table.c.status, event_table.c.attempts).where(
        event_table.c.id == event_id
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    row = session.execute(query).first()
    return None if row is None else (str(row.status), int(row.attempts))


def set_attempt(
    session: Session,
    event_id: str,
    status: str,
    attempts: int,
    error: str | None,
    traceback: str | None = None,
    next_attempt_at: datetime | None = None,
    handlers: list[dict[str, Any]] | None = None,
) -> None:
    """Store the outcome of an attempt that did not process the event (with the record of
    its handlers when it was not a delivery)."""
    session.execute(
        event_table.update()
        .where(event_table.c.id == event_id)
        .values(
            status=status,
            attempts=attempts,
            last_error=error,
            last_traceback=traceback,
            next_attempt_at=next_attempt_at,
            **({} if handlers is None else {"handlers": handlers}),
        )
    )


def set_handlers(session: Session, event_id: str, handlers: list[dict[str, Any]]) -> None:
    """Keep on the event the record of the handlers its latest run ran, when that run was
    not a delivery (whose own row keeps it)."""
    session.execute(
        event_table.update().where(event_table.c.id == event_id).values(handlers=handlers)
    )


def status_of(session: Session, event_id: str) -> str | None:
    """A stored event's status; ``None``: not stored."""
    return session.execute(
        sa.select(event_table.c.status).where(event_table.c.id == event_id)
    ).scalar()


# -- twins: a snapshot event and the thin event whose snapshot_event names it -------------------


def claim_twin(session: Session, placeholder: Mapping[str, Any]) -> bool:
    """Take the business event of the snapshot event ``placeholder["id"]`` for a thin event:
    insert the snapshot event's row as its placeholder (status ``twin``, no data, 0 attempts)
    unless a row with its id exists; else take over a row the pipeline is not done with
    (failed, pending, retrying), or one this thin event claimed before (it is run again).
    ``False``: the snapshot event is done (processed, ignored, dead) or another twin ran.
    On PostgreSQL a concurrent attempt on the same id waits for this transaction, then
    finds the row (the primary key is the twin key)."""
    connection = session.connection()
    if connection.dialect.name in _ON_CONFLICT and _on_conflict:
        if insert_event(connection, placeholder):
            return True
    else:
        try:
            with session.begin_nested():
                insert_event(session.connection(), placeholder)
            return True
        except IntegrityError:
            pass
    row, claimant = event_table.c, placeholder["twin_id"]
    taken = session.execute(
        event_table.update()
        .where(
            row.id == placeholder["id"],
            sa.or_(
                row.status.not_in(FINAL_STATUSES),
                sa.and_(row.status == TWIN, row.twin_id == claimant),  # claimed before: a rerun
            ),
        )
        .values(status=TWIN, twin_id=claimant, next_attempt_at=None)
    )
    return bool(taken.rowcount)  # type: ignore[attr-defined]


def mark_twin(session: Session, event_id: str, twin_id: str) -> None:
    """Record ``event_id`` as the twin that ran nothing, and link the other half back to it
    (unless it names another twin already)."""
    session.execute(
        event_table.update()
        .where(event_table.c.id == event_id)
        .values(status=TWIN, twin_id=twin_id)
    )
    session.execute(
        event_table.update()
        .where(event_table.c.id == twin_id, event_table.c.twin_id.is_(None))
        .values(twin_id=event_id)
    )


def adopt_placeholder(session: Session, event_id: str, values: Mapping[str, Any]) -> str | None:
    """A snapshot event whose thin twin ran first: fill its placeholder row (see
    :func:`claim_twin`) with what was delivered. Returns the twin's id; ``None`` when the row
    is no placeholder (a plain duplicate)."""
    row = event_table.c
    done = session.execute(
        event_table.update()
        .where(row.id == event_id, row.status == TWIN, row.attempts == 0)
        .values(**values, attempts=1)
        .returning(row.twin_id)
    ).first()
    return None if done is None else str(done[0])
