"""The tables: endpoints, deliveries (HTTP requests), events (one per Stripe id), the
newest event per Stripe object, and the audit trail of endpoint changes.

Tables only: no DDL runs as a side effect of ``create_all`` (the lz4 set-up of the large
columns is an explicit call, :func:`compress_with_lz4`).

The classes are mapped on this module's own :class:`~sqlalchemy.MetaData`, so they can be
imported before any app exists. :meth:`StripeHooks.init_app` copies the tables into the
app's ``db.metadata``, which is what ``db.create_all()`` and Flask-Migrate's autogenerate
read, and every query runs on the app's own ``db.session``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .utils import mode_name, utcnow


def _jsonb() -> JSONB:
    """JSONB whose ``repr`` is ``JSONB()``, so that Alembic autogenerates the same line,
    ``postgresql.JSONB()``, on every database. With JSONB's default ``astext_type=Text()``
    Alembic writes, when autogenerating on SQLite, a ``Text`` that the migration does not
    import. ``astext_type`` is never used: the column compares as generic JSON
    (``data["object"]["id"].as_string()``), which has no ``.astext``.
    """
    jsonb = JSONB()
    jsonb.astext_type = None  # type: ignore[assignment]
    return jsonb


#: JSON everywhere, JSONB on PostgreSQL (indexable, compact).
JSONType = sa.JSON().with_variant(_jsonb(), "postgresql")
#: 64-bit ids where the database has them; SQLite only auto-increments INTEGER.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = sa.MetaData()


class WebhookEndpoint(Base):
    """A URL that Stripe posts to: ``{prefix}/webhook/<uuid>/``, with its own secrets.

    ``secrets`` is a list of ``{"secret": "whsec_...", "expires_at": ISO-8601 or None}``;
    a payload signed with any unexpired one is accepted, which is how a rotation works.
    """

    __tablename__ = "stripe_hooks_endpoint"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), unique=True, nullable=False, default=uuid.uuid4
    )
    stripe_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    url: Mapped[str] = mapped_column(sa.String(2048), default="", nullable=False)
    livemode: Mapped[bool] = mapped_column(sa.Boolean, default=False, nullable=False)
    account: Mapped[str] = mapped_column(sa.String(255), default="", nullable=False)
    secrets: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list, nullable=False)
    tolerance: Mapped[int | None] = mapped_column(sa.Integer)
    api_version: Mapped[str] = mapped_column(sa.String(64), default="", nullable=False)
    enabled_events: Mapped[list[str]] = mapped_column(
        sa.JSON, default=lambda: ["*"], nullable=False
    )
    description: Mapped[str] = mapped_column(sa.Text, default="", nullable=False)
    metadata_: Mapped[dict[str, str]] = mapped_column(
        "metadata", sa.JSON, default=dict, nullable=False
    )
    status: Mapped[str] = mapped_column(sa.String(16), default="enabled", nullable=False)
    connect: Mapped[bool] = mapped_column(sa.Boolean, default=False, nullable=False)
    #: ``"snapshot"`` (classic events, a v1 webhook endpoint) or ``"thin"`` (v2 event
    #: notifications, an event destination); an endpoint accepts only its own style.
    payload: Mapped[str] = mapped_column(
        sa.String(16), default="snapshot", server_default="snapshot", nullable=False
    )
    #: Paused (``flask stripe-hooks pause``): deliveries are verified, stored as pending and
    #: acknowledged, and no handler runs until ``resume``.
    paused: Mapped[bool] = mapped_column(
        sa.Boolean, default=False, server_default=sa.false(), nullable=False
    )
    #: A thin endpoint made by ``migrate-to-thin``: ``{"from": <the snapshot endpoint's
    #: uuid>, "phase": "shadow" | "cutover" | "done"}``; ``None`` for every other endpoint.
    migration: Mapped[dict[str, str] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, onupdate=utcnow, nullable=False
    )

    @property
    def mode(self) -> str:
        return mode_name(self.livemode)

    @property
    def enabled(self) -> bool:
        return self.status == "enabled"

    @property
    def thin(self) -> bool:
        return self.payload == "thin"

    def active_secrets(self, now: datetime | None = None) -> tuple[str, ...]:
        """The signing secrets that have not expired, newest first."""
        return active_secrets(self.secrets, now or utcnow())

    def __repr__(self) -> str:  # never the secrets
        return f"<WebhookEndpoint {self.uuid} {self.mode} {self.status}>"


def active_secrets(
    secrets: Sequence[Mapping[str, Any]],
    now: datetime,
    unseal: Callable[[str], str] | None = None,
) -> tuple[str, ...]:
    """The secrets of an endpoint's ``secrets`` column that have not expired, newest first.

    ``unseal`` turns a stored value into the secret (decrypts it, :mod:`.crypto`); without
    it the stored values are returned as they are.
    """
    out = []
    for item in reversed(secrets or ()):
        expires = item.get("expires_at")
        if expires and datetime.fromisoformat(expires) <= now:
            continue
        out.append(item["secret"] if unseal is None else unseal(item["secret"]))
    return tuple(out)


def seconds_to_expiry(secrets: Sequence[Mapping[str, Any]], now: datetime) -> float | None:
    """Seconds until the first of the secrets that will expire does (``None``: none will)."""
    soonest = None
    for item in secrets or ():
        expires = item.get("expires_at")
        if expires:
            left = (datetime.fromisoformat(expires) - now).total_seconds()
            if left > 0 and (soonest is None or left < soonest):
                soonest = left
    return soonest


class WebhookDelivery(Base):
    """One HTTP request that reached a known endpoint, valid or not, kept for audit."""

    __tablename__ = "stripe_hooks_delivery"
    # Each list filter with its order (newest first, ``id`` breaking ties), so a page costs
    # the same with a million rows as with a thousand (docs/scale.md).
    __table_args__ = (
        sa.Index("ix_stripe_hooks_delivery_received", "received_at", "id"),
        sa.Index("ix_stripe_hooks_delivery_endpoint_received", "endpoint_id", "received_at", "id"),
        sa.Index("ix_stripe_hooks_delivery_outcome_received", "outcome", "received_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        sa.ForeignKey("stripe_hooks_endpoint.id", ondelete="CASCADE"), nullable=False
    )
    received_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, nullable=False
    )
    remote_addr: Mapped[str | None] = mapped_column(sa.String(64))
    headers: Mapped[dict[str, str]] = mapped_column(sa.JSON, default=dict)
    body: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    valid: Mapped[bool] = mapped_column(sa.Boolean, nullable=False)
    outcome: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    error: Mapped[str | None] = mapped_column(sa.Text)
    traceback: Mapped[str | None] = mapped_column(sa.Text)
    event_id: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    duration_ms: Mapped[float | None] = mapped_column(sa.Float)
    #: The handlers this delivery's attempt ran, in order: ``{"name": "module.function",
    #: "ms": 0.4}``, with ``"error"`` on the one that raised (or whose writes failed when
    #: flushed) and ``"skipped"`` on a ``latest_only`` one that a stale event skipped.
    handlers: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON(none_as_null=True))

    def __repr__(self) -> str:
        return f"<WebhookDelivery {self.id} {self.outcome} {self.event_id or ''}>"


class StripeEvent(Base):
    """One Stripe event, keyed by its id: the exactly-once gate."""

    __tablename__ = "stripe_hooks_event"
    # As for deliveries. The type index is in byte order (``COLLATE "C"`` on PostgreSQL;
    # SQLite compares bytes already), the order of the range that
    # :func:`~flask_stripe_hooks.event_types.type_condition` emits for a type prefix.
    __table_args__ = (
        sa.Index("ix_stripe_hooks_event_received", "received_at", "id"),
        sa.Index("ix_stripe_hooks_event_status_received", "status", "received_at", "id"),
        sa.Index("ix_stripe_hooks_event_account_received", "account", "received_at", "id"),
        sa.Index(
            "ix_stripe_hooks_event_type_received",
            "type",
            "received_at",
            postgresql_ops={"type": 'COLLATE "C"'},
        ),
        sa.Index("ix_stripe_hooks_event_object_received", "object_id", "received_at", "id"),
    )

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(255), index=True, nullable=False)
    livemode: Mapped[bool] = mapped_column(sa.Boolean, nullable=False)
    #: The connected account a Connect event happened in (``acct_...``); a thin event's
    #: ``context``; ``""``: the endpoint's own account.
    account: Mapped[str] = mapped_column(sa.String(255), default="", nullable=False)
    #: The ``context`` Stripe sent with the event (Organizations, thin events), or ``""``.
    context: Mapped[str] = mapped_column(
        sa.String(255), default="", server_default="", nullable=False
    )
    api_version: Mapped[str] = mapped_column(sa.String(64), default="", nullable=False)
    created: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    request_id: Mapped[str | None] = mapped_column(sa.String(255))
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255))
    endpoint_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("stripe_hooks_endpoint.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    received_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, nullable=False
    )
    processed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    #: When a ``retrying`` event is due (``process-pending`` runs it from then on).
    next_attempt_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    #: The traceback of the last failed run (a delivery's own is on its delivery row).
    last_traceback: Mapped[str | None] = mapped_column(sa.Text)
    #: ``{"newer_event_id": ..., "skipped": [handler, ...]}`` when ``latest_only`` handlers
    #: skipped the event because a newer one about its object had been processed.
    stale: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    #: The other half of one business event sent twice: on a thin event, the snapshot event
    #: its ``snapshot_event`` names; on a snapshot event, the thin event that named it. Of
    #: the two, the one whose status is ``twin`` ran nothing.
    twin_id: Mapped[str | None] = mapped_column(sa.String(255))
    #: The id of the Stripe object the event is about (``data.object.id``, or a thin
    #: event's ``related_object.id``): an object's history is one range of its index.
    object_id: Mapped[str | None] = mapped_column(sa.String(255))
    #: The handlers of the latest run that was not a delivery (a worker, ``reprocess``, the
    #: admin's "process again", ``fetch-missed``), as :attr:`WebhookDelivery.handlers`.
    handlers: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON(none_as_null=True))

    def __repr__(self) -> str:
        return f"<StripeEvent {self.id} {self.type} {self.status}>"


class TrackedObject(Base):
    """The newest event applied to each Stripe object (``data.object.id``, or a thin event's
    ``related_object.id``): what tells an old event from a new one when Stripe delivers them
    out of order. Written in the transaction that processes the event."""

    __tablename__ = "stripe_hooks_object"

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    created: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)

    def __repr__(self) -> str:
        return f"<TrackedObject {self.id} {self.event_id}>"


class AuditEntry(Base):
    """One change of an endpoint: who (``actor``), from where (``source``: ``admin``,
    ``cli`` or ``code``), ``action`` and ``changes`` (``{field: [old, new]}``; never a secret).
    ``endpoint_uuid`` outlives the endpoint; ``endpoint_id`` is cleared when it is deleted."""

    __tablename__ = "stripe_hooks_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("stripe_hooks_endpoint.id", ondelete="SET NULL")
    )
    endpoint_uuid: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), nullable=False, index=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow, nullable=False)
    actor: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    source: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    action: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    changes: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict, nullable=False)

    def __repr__(self) -> str:
        return f"<AuditEntry {self.id} {self.action} {self.endpoint_uuid}>"


endpoint_table: sa.Table = WebhookEndpoint.__table__  # type: ignore[assignment]
delivery_table: sa.Table = WebhookDelivery.__table__  # type: ignore[assignment]
event_table: sa.Table = StripeEvent.__table__  # type: ignore[assignment]
object_table: sa.Table = TrackedObject.__table__  # type: ignore[assignment]
audit_table: sa.Table = AuditEntry.__table__  # type: ignore[assignment]


def attach_tables(metadata: sa.MetaData) -> None:
    """Copy the tables into ``metadata`` (the app's ``db.metadata``) once."""
    for table in Base.metadata.sorted_tables:
        if table.name not in metadata.tables:
            table.to_metadata(metadata)


# -- lz4 ---------------------------------------------------------------------------------------

#: The large columns: the raw body of every delivery and the data of every event. On
#: PostgreSQL 14 and later (built with lz4, as Debian's, PGDG's and the official images are)
#: they can be compressed with lz4 instead of the default pglz: less database CPU per
#: delivery, for about the same size on disk (docs/performance.md has the figures).
LZ4_COLUMNS = {"stripe_hooks_delivery": "body", "stripe_hooks_event": "data"}


def compress_with_lz4(connection: sa.Connection) -> bool:
    """Switch :data:`LZ4_COLUMNS` to lz4 where the server supports it; ``False`` elsewhere
    (SQLite, PostgreSQL before 14 or without lz4). Call it from a migration::

        from flask_stripe_hooks.models import compress_with_lz4

        def upgrade():
            ...
            compress_with_lz4(op.get_bind())

    or once after ``db.create_all()``. Only rows written afterwards are compressed with lz4.
    """
    if connection.dialect.name != "postgresql":
        return False
    values = connection.exec_driver_sql(
        "SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"
    ).scalar()
    if not (isinstance(values, list) and "lz4" in values):
        return False
    for table, column in LZ4_COLUMNS.items():
        connection.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")
    return True
