"""A long history made with SQL, for the paging tests and ``bench/history.py``: one
``INSERT ... SELECT`` per table over ``generate_series`` (PostgreSQL) or a recursive CTE
(SQLite), never one delivery at a time. Rows are small: ``{}`` data, a two-byte body."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

#: The types the rows cycle through: a prefix filter (``invoice``) matches two in five.
TYPES = ("invoice.paid", "customer.created", "invoice.finalized", "charge.succeeded", "payout.paid")


def _series(dialect: str) -> tuple[str, str, str]:
    """``(WITH clause, FROM clause, received_at expression)`` for numbers first..last."""
    if dialect == "postgresql":
        return (
            "",
            "generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS s(g)",
            "CAST(:newest AS timestamptz) - g * CAST(:step AS bigint) * interval '1 second'",
        )
    return (
        "WITH RECURSIVE s(g) AS (SELECT :first UNION ALL SELECT g + 1 FROM s WHERE g < :last) ",
        "s",
        "strftime('%Y-%m-%d %H:%M:%S', :epoch - g * :step, 'unixepoch') || '.000000'",
    )


def fill(
    conn: Any,
    count: int,
    *,
    newest: datetime,
    endpoint_id: int,
    first: int = 1,
    step: int = 1,
    prefix: str = "evt_h",
    types: tuple[str, ...] = TYPES,
    failed_every: int = 50,
    live_every: int = 10,
    status: str | None = None,
    accounts: int = 0,
    objects: int = 100,
) -> None:
    """Add ``count`` events and one delivery each, numbered from ``first``: event ``g`` is
    received ``g * step`` seconds before ``newest``, has ``types[g % len(types)]``, is
    failed when ``g % failed_every == 0`` (processed otherwise; ``status`` for all of them),
    live when ``g % live_every == 0``, about the object ``sub_{g % objects}`` (its data
    stays ``{}``) and, with ``accounts``, of the connected account ``acct_h{g % accounts}``
    (the platform's own otherwise)."""
    dialect = conn.dialect.name
    with_, from_, when = _series(dialect)
    kinds = " ".join(f"WHEN {i} THEN '{t}'" for i, t in enumerate(types))
    outcome = f"CASE WHEN g % {failed_every} = 0 THEN 'failed' ELSE 'processed' END"
    status_sql = f"'{status}'" if status else outcome
    params = {
        "first": first,
        "last": first + count - 1,
        "newest": newest,
        "epoch": newest.timestamp(),
        "step": step,
        "prefix": prefix,
        "endpoint": endpoint_id,
    }
    true = "true" if dialect == "postgresql" else "1"
    event_id = "CAST(:prefix AS TEXT) || g"
    account = f"'acct_h' || (g % {accounts})" if accounts else "''"
    conn.execute(
        sa.text(
            f"{with_}INSERT INTO stripe_hooks_event (id, type, livemode, account, api_version,"
            " data, status, attempts, received_at, endpoint_id, object_id)"
            f" SELECT {event_id}, CASE g % {len(types)} {kinds} END, g % {live_every} = 0,"
            f" {account}, '', '{{}}', {status_sql}, 1, {when}, :endpoint,"
            f" 'sub_' || CAST(g % {objects} AS TEXT) FROM {from_}"
        ),
        params,
    )
    body = "'\\x7b7d'::bytea" if dialect == "postgresql" else "X'7B7D'"
    conn.execute(
        sa.text(
            f"{with_}INSERT INTO stripe_hooks_delivery (endpoint_id, received_at, headers,"
            " body, valid, outcome, event_id)"
            f" SELECT :endpoint, {when}, '{{}}', {body}, {true}, {outcome}, {event_id}"
            f" FROM {from_}"
        ),
        params,
    )
