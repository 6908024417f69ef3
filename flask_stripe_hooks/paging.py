"""Keyset pages and capped counts: lists whose cost does not grow with history.

A page is found by the last row's ``(received_at, id)``, not by skipping rows with
``OFFSET``, and the total is counted over at most :data:`COUNT_CAP` + 1 rows: with an index
on ``(filter column, received_at, id)`` (see :mod:`.models`), the newest page, the next one
and the count cost the same with a million rows as with a thousand. A row inserted between
two page views appears on the newest page; it never shifts or repeats the rows of an older
page, as ``OFFSET`` would.

The admin's events and deliveries lists use it; a link carries ``before=`` (older rows) or
``after=`` (newer rows) with a cursor made by :func:`cursor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from .errors import BadCursor
from .utils import aware

#: Counts stop here: the page shows "1,000+" rather than scanning every row.
COUNT_CAP = 1000


@dataclass
class Page:
    """Rows, newest first, with the cursors of the pages on either side."""

    items: list[Any]
    #: Cursor for ``after=`` (the newer page), or ``None`` on the newest page.
    newer: str | None
    #: Cursor for ``before=`` (the older page), or ``None`` on the oldest page.
    older: str | None
    #: Rows that match, counted up to ``COUNT_CAP + 1``.
    total: int

    @property
    def total_label(self) -> str:
        return count_label(self.total)


def count_label(n: int, cap: int = COUNT_CAP) -> str:
    """``"1,234"``, or ``"1,000+"`` for a count that passed the cap."""
    return f"{cap:,}+" if n > cap else f"{n:,}"


def capped_count(session: Any, query: sa.Select[Any], column: Any, cap: int = COUNT_CAP) -> int:
    """How many rows ``query`` matches, up to ``cap + 1``: a count over a ``LIMIT``
    subquery reads at most that many index entries (in the order of ``query``, if any)."""
    limited = query.with_only_columns(column).limit(cap + 1).subquery()
    return int(session.execute(sa.select(sa.func.count()).select_from(limited)).scalar() or 0)


def newest(query: sa.Select[Any], received_at: Any, id_column: Any) -> sa.Select[Any]:
    """``query``'s newest :data:`COUNT_CAP` rows by ``(received_at, id)``: the most a check
    over a time window reads, however busy the window was."""
    return query.order_by(received_at.desc(), id_column.desc()).limit(COUNT_CAP)


def cursor(received_at: datetime, row_id: Any) -> str:
    """``2026-11-28T18:15:33.123456+00:00_evt_1``: a row's place in a list."""
    return f"{aware(received_at).astimezone(timezone.utc).isoformat()}_{row_id}"


def parse_cursor(text: str, id_column: Any) -> tuple[datetime, Any]:
    when, sep, row_id = text.partition("_")
    try:
        if not sep or not row_id:
            raise ValueError(text)
        at = datetime.fromisoformat(when)
        key: Any = int(row_id) if isinstance(id_column.type, sa.Integer) else row_id
    except ValueError:
        raise BadCursor("This page link is not valid; start again from the newest page.") from None
    return aware(at), key


def keyset_page(
    session: Any,
    query: sa.Select[Any],
    received_at: Any,
    id_column: Any,
    *,
    per_page: int,
    before: str | None = None,
    after: str | None = None,
    rows: bool = False,
) -> Page:
    """The page of ``query`` (filtered, not ordered) older than ``before`` or newer than
    ``after`` (the newest page without either), newest first. Its items are the first
    column of each row (an ORM entity), or with ``rows`` the rows (a Core select).

    Raises :class:`BadCursor` for a cursor that cannot be read.
    """
    key = sa.tuple_(received_at, id_column)

    def fetch(select: sa.Select[Any]) -> list[Any]:
        result = session.execute(select)
        return list(result if rows else result.scalars())

    total = capped_count(session, query, id_column)
    newest_first = (received_at.desc(), id_column.desc())
    if after:
        found = fetch(
            query.where(key > parse_cursor(after, id_column))
            .order_by(received_at, id_column)
            .limit(per_page + 1)
        )
        if len(found) <= per_page:  # reached the newest rows: show the newest page whole
            return keyset_page(session, query, received_at, id_column, per_page=per_page, rows=rows)
        items = found[:per_page][::-1]
        return Page(items, _cursor_of(items[0]), _cursor_of(items[-1]), total)
    if before:
        query = query.where(key < parse_cursor(before, id_column))
    found = fetch(query.order_by(*newest_first).limit(per_page + 1))
    items = found[:per_page]
    newer = _cursor_of(items[0]) if before and items else None
    older = _cursor_of(items[-1]) if len(found) > per_page else None
    return Page(items, newer, older, total)


def _cursor_of(row: Any) -> str:
    return cursor(row.received_at, row.id)
