"""Small shared helpers: time, durations, masking, mode names, settings."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from werkzeug.utils import import_string

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_duration(text: str) -> timedelta:
    """``30s``, ``5m``, ``2h``, ``3d`` (or ``0``, meaning now) as a timedelta."""
    match = _DURATION.match(text or "")
    if not match:
        raise ValueError(f"{text!r} is not a duration; write it as 30s, 5m, 2h or 3d.")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def mask(secret: str | None) -> str:
    """``whsec_…`` with the rest hidden; never shows any part of the secret value."""
    if not secret:
        return ""
    prefix = secret.split("_", 1)[0] + "_" if "_" in secret else ""
    return prefix + "••••••••"


def mode_name(livemode: bool) -> str:
    """``"live"`` or ``"test"``: how Stripe names an object's mode."""
    return "live" if livemode else "test"


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
