"""``on_commit``: work that must happen only once the event's transaction has committed.

Flask-SQLAlchemy has no ``transaction.on_commit``, and SQLAlchemy's ``after_commit`` session
event runs inside the commit (no SQL allowed) for any commit of the shared session. So the
pipeline collects the callbacks of the event it is processing, runs them after its own
``commit()`` returns, and drops them on rollback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

log = logging.getLogger("flask_stripe_hooks")

_callbacks: ContextVar[list[Callable[[], Any]] | None] = ContextVar(
    "stripe_hooks_on_commit", default=None
)


def on_commit(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Run ``fn()`` after the transaction processing the current event commits.

    Call it from a handler. If the transaction rolls back, ``fn`` is never called. A
    callback that raises is logged; the event stays processed.
    """
    pending = _callbacks.get()
    if pending is None:
        raise RuntimeError(
            "on_commit() is only available while a Stripe event is being processed;"
            " call it from a handler registered with @hooks.on(...)."
        )
    pending.append(fn)
    return fn


def collecting() -> tuple[list[Callable[[], Any]], Token[Any]]:
    """Start collecting the callbacks of one event: the list, and the token to stop."""
    callbacks: list[Callable[[], Any]] = []
    return callbacks, _callbacks.set(callbacks)


def stop_collecting(token: Token[Any]) -> None:
    _callbacks.reset(token)


def run(callbacks: list[Callable[[], Any]]) -> None:
    """Call each callback once the transaction has committed; one that raises is logged."""
    for fn in callbacks:
        try:
            fn()
        except Exception:
            log.exception("on_commit callback %r failed", fn)
