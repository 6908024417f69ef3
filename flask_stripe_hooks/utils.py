"""Small shared helpers: time, durations, masking, mode names, settings, a log throttle, and
telling a database that lacks this extension's tables from one that is down."""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from werkzeug.utils import import_string

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def aware(value: datetime) -> datetime:
    """``value`` with UTC as its zone when it has none (SQLite gives back naive UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def fmt_time(value: datetime) -> str:
    """``2026-11-28 18:15:33 UTC``."""
    return aware(value).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def mode_name(livemode: bool) -> str:
    """``"live"`` or ``"test"``: the word Stripe's Dashboard uses for a mode."""
    return "live" if livemode else "test"


def parse_duration(text: str) -> timedelta:
    """``30s``, ``5m``, ``2h``, ``3d`` (or ``0``, meaning now) as a timedelta."""
    match = _DURATION.match(text or "")
    if not match:
        raise ValueError(f"{text!r} is not a duration; write it as 30s, 5m, 2h or 3d.")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def format_duration(delta: timedelta) -> str:
    """The inverse of :func:`parse_duration`: the largest whole unit (``3d``, ``90m``)."""
    seconds = int(delta.total_seconds())
    for unit in "dhm":
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def mask(secret: str | None) -> str:
    """``whsec_…`` with the rest hidden; never shows any part of the secret value."""
    if not secret:
        return ""
    prefix = secret.split("_", 1)[0] + "_" if "_" in secret else ""
    return prefix + "••••••••"


def resolve_setting(value: Any, key: str) -> Any:
    """A setting that holds a callable or its dotted path (``"myapp.auth.admin_only"``) as
    the callable; ``None`` stays ``None``. A bad value raises ``RuntimeError`` naming ``key``.
    """
    if value is None or callable(value):
        return value
    if isinstance(value, str):
        try:
            return import_string(value)
        except ImportError as exc:
            raise RuntimeError(f"{key}: cannot import {value!r} ({exc}).") from None
    raise RuntimeError(f"{key} must be a callable or a dotted path, not {value!r}.")


class Throttle:
    """At most one log line per ``every`` seconds for a recurring failure: :meth:`due` says
    whether a line may be written now and how many were held back since the last one."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self._lock = threading.Lock()
        self._next = 0.0
        self._held = 0

    def due(self) -> int | None:
        """The number of lines held back since the last one, when a line is due now (write
        it); ``None`` when not (this one is counted as held back)."""
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._held += 1
                return None
            held, self._held, self._next = self._held, 0, now + self.every
            return held


#: SQLSTATEs of a missing table and a missing column (PostgreSQL and the SQL standard).
_UNDEFINED = ("42P01", "42703")
#: SQLite's and MySQL's words for the same.
_MISSING_WORDS = ("no such table", "no such column", "has no column named", "doesn't exist")


def schema_missing(exc: BaseException) -> str | None:
    """The database's own words when ``exc`` says a table or column of this extension
    (``stripe_hooks_...``) does not exist: the migration has not run. ``None`` otherwise,
    including for a missing table of the app's own."""
    orig = getattr(exc, "orig", None)
    if orig is None:
        return None
    said = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    statement = str(getattr(exc, "statement", None) or "")
    if "stripe_hooks_" not in said and "stripe_hooks_" not in statement:
        return None
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state in _UNDEFINED or any(words in said for words in _MISSING_WORDS):
        return said
    return None


def upgrade_hint(said: str) -> str:
    """The one line that tells a person with a missing table what to run."""
    return (
        f"The database lacks flask-stripe-hooks' tables or columns ({said}):"
        " run 'flask db upgrade'."
    )
