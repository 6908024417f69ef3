"""The example app's own tables, written by its handlers in the event's transaction."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from . import db


class Customer(db.Model):  # type: ignore[name-defined]
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_id: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str | None] = mapped_column(String(255))


class ActivityLog(db.Model):  # type: ignore[name-defined]
    """One line per handler call, so you can see what ran."""

    __tablename__ = "activity_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), index=True)
    handler: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(String(500))
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(timezone.utc)
    )
