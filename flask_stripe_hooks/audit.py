"""The audit trail of endpoint changes: who changed what, when, and from where.

The endpoint operations (:mod:`.endpoints`, and pause/resume in :mod:`.recovery`) call
:func:`record` before they commit, so the row is written in the same transaction as the change.
Who: inside :func:`acting`, the name given; in an admin request, the name the
``STRIPE_HOOKS_ADMIN_AUTH`` callable returned (or ``"admin"`` when it returned ``True``); in a
``flask stripe-hooks`` command, the OS user; otherwise ``"code"``. No secret is ever recorded:
a new signing secret is written as ``"rotated, N kept until ..."``.
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import click
import sqlalchemy as sa
from flask import g, has_request_context

from .models import AuditEntry

ADMIN, CLI, CODE = "admin", "cli", "code"
_acting: ContextVar[tuple[str, str] | None] = ContextVar("stripe_hooks_actor", default=None)


@contextmanager
def acting(actor: str, source: str = CODE) -> Iterator[None]:
    """Record the changes made inside this block as made by ``actor``."""
    token = _acting.set((actor, source))
    try:
        yield
    finally:
        _acting.reset(token)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def who() -> tuple[str, str]:
    """``(actor, source)`` of the change being made now."""
    given = _acting.get()
    if given is not None:
        return given
    if has_request_context() and "stripe_hooks_actor" in g:
        return g.stripe_hooks_actor, ADMIN
    if click.get_current_context(silent=True) is not None:
        return _os_user(), CLI
    return CODE, CODE


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` for the fields whose value differs."""
    return {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}


def record(
    session: Any,
    endpoint: Any,
    action: str,
    changes: Mapping[str, Any] | None = None,
) -> None:
    """Add an audit row for ``endpoint`` (a row, or anything with ``id`` and ``uuid``) to
    ``session``: it is committed, or rolled back, with the change itself. A ``deleted`` row
    keeps only the endpoint's uuid."""
    actor, source = who()
    session.add(
        AuditEntry(
            endpoint_id=None if action == "deleted" else endpoint.id,
            endpoint_uuid=endpoint.uuid,
            actor=actor[:255],
            source=source,
            action=action,
            changes=dict(changes or {}),
        )
    )


def entries(session: Any, endpoint_uuid: uuid.UUID | None = None, limit: int = 20) -> list[Any]:
    """The latest audit rows, newest first (of one endpoint, or of all)."""
    query = sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if endpoint_uuid is not None:
        query = query.where(AuditEntry.endpoint_uuid == endpoint_uuid)
    return list(session.execute(query).scalars())


#: Actions whose ``changes`` hold the endpoint's values, not ``[old, new]`` pairs.
SNAPSHOTS = frozenset({"created", "imported", "deleted", "secret-rotated"})


def describe(changes: Mapping[str, Any], action: str = "") -> str:
    """``status: enabled → disabled; secret: rotated, 1 kept until ...``; for an action in
    :data:`SNAPSHOTS`, the values it recorded (``enabled_events: invoice.paid,
    invoice.payment_failed``), empty ones left out."""
    parts = []
    for name, value in changes.items():
        if action in SNAPSHOTS:
            if value in (None, "", []):
                continue
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            parts.append(f"{name}: {shown}")
        elif isinstance(value, list) and len(value) == 2:
            parts.append(f"{name}: {_shown(value[0])} → {_shown(value[1])}")
        else:
            parts.append(f"{name}: {value}")
    return "; ".join(parts)


def _shown(value: Any) -> str:
    """One side of a change: a list as its items, nothing as "none"."""
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return "none" if value in (None, "") else repr(value)
