"""The event types Stripe sends, read from the installed stripe-python, never hand-copied."""

from __future__ import annotations

import difflib
import typing
from functools import cache


@cache
def all_event_types() -> tuple[str, ...]:
    """Every snapshot event type, sorted, from ``WebhookEndpointCreateParams``.

    ``typing.get_type_hints`` raises ``NameError`` on that class, so the annotation is
    read directly; it is ``List[Literal["*", "account.updated", ...]]``.
    """
    from stripe.params import WebhookEndpointCreateParams

    annotation = WebhookEndpointCreateParams.__annotations__["enabled_events"]
    (literal,) = typing.get_args(annotation)
    return tuple(sorted(name for name in typing.get_args(literal) if name != "*"))


@cache
def known_names() -> frozenset[str]:
    """Every type, every whole-segment prefix of one, and ``*``."""
    names = {"*"}
    for event_type in all_event_types():
        parts = event_type.split(".")
        names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(names)


def is_known(name: str) -> bool:
    return name in known_names()


def closest(name: str) -> str | None:
    matches = difflib.get_close_matches(name, known_names(), n=1, cutoff=0.6)
    return matches[0] if matches else None


def matching(pattern: str) -> list[str]:
    """The real types a name or pattern stands for.

    ``customer`` and ``customer.*`` both mean every type under ``customer``; an exact type
    means itself; ``*`` means every type. Unknown names give an empty list.
    """
    pattern = pattern.strip()
    if pattern in ("*", ""):
        return list(all_event_types()) if pattern == "*" else []
    prefix = pattern[:-2] if pattern.endswith(".*") else pattern
    return [t for t in all_event_types() if t == prefix or t.startswith(prefix + ".")]


def object_name(event_type: str) -> str:
    """The ``object`` value of the resource an event type is about.

    ``customer.subscription.created`` → ``subscription``; ``invoice.paid`` → ``invoice``;
    ``checkout.session.completed`` → ``checkout.session``.
    """
    parts = event_type.split(".")[:-1] or [event_type]
    namespaced = {
        "checkout",
        "billing_portal",
        "issuing",
        "radar",
        "reporting",
        "terminal",
        "treasury",
        "identity",
        "financial_connections",
        "billing",
        "climate",
        "entitlements",
        "tax",
        "test_helpers",
    }
    if parts[0] in namespaced and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[-1]  # customer.subscription → subscription
