"""The three tables: endpoints, deliveries (HTTP requests) and events (one per Stripe id).

The classes are mapped on this module's own :class:`~sqlalchemy.MetaData`, so they can be
imported before any app exists. :meth:`StripeHooks.init_app` copies the tables into the
app's ``db.metadata``, which is what ``db.create_all()`` and Flask-Migrate's autogenerate
read, and every query runs on the app's own ``db.session``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .utils import utcnow

#: JSON everywhere, JSONB on PostgreSQL (indexable, compact).
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
#: 64-bit ids where the database has them; SQLite only auto-increments INTEGER.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: Delivery outcomes.
REJECTED, PROCESSED, DUPLICATE, FAILED, QUEUED = (
    "rejected",
    "processed",
    "duplicate",
    "failed",
    "queued",
)
#: Event statuses.
PENDING = "pending"
EVENT_STATUSES = (PENDING, PROCESSED, FAILED)


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
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, onupdate=utcnow, nullable=False
    )

    @property
    def mode(self) -> str:
        return "live" if self.livemode else "test"

    @property
    def enabled(self) -> bool:
        return self.status == "enabled"

    @property
    def thin(self) -> bool:
        return self.payload == "thin"

    def __repr__(self) -> str:  # never the secrets
        return f"<WebhookEndpoint {self.uuid} {self.mode} {self.status}>"


class WebhookDelivery(Base):
    """One HTTP request that reached a known endpoint, valid or not, kept for audit."""

    __tablename__ = "stripe_hooks_delivery"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        sa.ForeignKey("stripe_hooks_endpoint.id", ondelete="CASCADE"),
        index=True,
        nullable=False,
    )
    received_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, nullable=False, index=True
    )
    remote_addr: Mapped[str | None] = mapped_column(sa.String(64))
    headers: Mapped[dict[str, str]] = mapped_column(sa.JSON, default=dict)
    body: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    valid: Mapped[bool] = mapped_column(sa.Boolean, nullable=False)
    outcome: Mapped[str] = mapped_column(sa.String(16), nullable=False, index=True)
    error: Mapped[str | None] = mapped_column(sa.Text)
    traceback: Mapped[str | None] = mapped_column(sa.Text)
    event_id: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    duration_ms: Mapped[float | None] = mapped_column(sa.Float)

    def __repr__(self) -> str:
        return f"<WebhookDelivery {self.id} {self.outcome} {self.event_id or ''}>"


class StripeEvent(Base):
    """One Stripe event, keyed by its id: the exactly-once gate."""

    __tablename__ = "stripe_hooks_event"

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(255), index=True, nullable=False)
    livemode: Mapped[bool] = mapped_column(sa.Boolean, nullable=False)
    account: Mapped[str] = mapped_column(sa.String(255), default="", nullable=False)
    api_version: Mapped[str] = mapped_column(sa.String(64), default="", nullable=False)
    created: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    request_id: Mapped[str | None] = mapped_column(sa.String(255))
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255))
    endpoint_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("stripe_hooks_endpoint.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, index=True)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    received_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, nullable=False, index=True
    )
    processed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    #: The traceback of the last failed run (a delivery's own is on its delivery row).
    last_traceback: Mapped[str | None] = mapped_column(sa.Text)

    def __repr__(self) -> str:
        return f"<StripeEvent {self.id} {self.type} {self.status}>"


endpoint_table: sa.Table = WebhookEndpoint.__table__  # type: ignore[assignment]
delivery_table: sa.Table = WebhookDelivery.__table__  # type: ignore[assignment]
event_table: sa.Table = StripeEvent.__table__  # type: ignore[assignment]


def attach_tables(metadata: sa.MetaData) -> None:
    """Copy the tables into ``metadata`` (the app's ``db.metadata``) once."""
    for table in Base.metadata.sorted_tables:
        if table.name not in metadata.tables:
            copy = table.to_metadata(metadata)
            if table.name in LZ4_COLUMNS:
                sa.event.listen(copy, "after_create", _compress_after_create)


#: The large columns: the raw body of every delivery and the data of every event. On
#: PostgreSQL 14 and later (built with lz4, as Debian's, PGDG's and the official images are)
#: they are compressed with lz4 instead of the default pglz: about 0.25 ms less database CPU
#: per delivery of 10 KB, for about the same size on disk.
LZ4_COLUMNS = {"stripe_hooks_delivery": "body", "stripe_hooks_event": "data"}


def compress_with_lz4(connection: sa.Connection) -> bool:
    """Switch :data:`LZ4_COLUMNS` to lz4 where the server supports it; ``False`` elsewhere
    (SQLite, PostgreSQL before 14 or without lz4). Call it from a migration::

        from flask_stripe_hooks.models import compress_with_lz4

        def upgrade():
            ...
            compress_with_lz4(op.get_bind())

    Only rows written afterwards are compressed with lz4.
    """
    if not _lz4_available(connection):
        return False
    for table in LZ4_COLUMNS:
        _set_lz4(connection, table)
    return True


def _set_lz4(connection: sa.Connection, table: str) -> None:
    column = LZ4_COLUMNS[table]
    connection.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")


def _lz4_available(connection: sa.Connection) -> bool:
    if connection.dialect.name != "postgresql":
        return False
    values = connection.exec_driver_sql(
        "SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"
    ).scalar()
    return isinstance(values, list) and "lz4" in values


def _compress_after_create(table: sa.Table, connection: sa.Connection, **kw: Any) -> None:
    if _lz4_available(connection):
        _set_lz4(connection, table.name)
