"""Deprecated: thin events live with snapshot events now.

Import :class:`~flask_stripe_hooks.events.ThinEvent` (and ``SNAPSHOT``, ``THIN``,
``PAYLOAD_STYLES``, ``THIN_OBJECT``, ``parse_created``) from :mod:`flask_stripe_hooks.events`
and :func:`~flask_stripe_hooks.verification.verify_thin` from
:mod:`flask_stripe_hooks.verification`. This module goes away in a later version.
"""

from __future__ import annotations

import warnings
from typing import Any

from . import events, verification

_MOVED = {
    "ThinEvent": events,
    "SNAPSHOT": events,
    "THIN": events,
    "PAYLOAD_STYLES": events,
    "THIN_OBJECT": events,
    "parse_created": events,
    "verify_thin": verification,
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"flask_stripe_hooks.thin.{name} is deprecated; import it from {module.__name__}.",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(module, name)
