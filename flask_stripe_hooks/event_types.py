"""The event types Stripe sends, read from the installed stripe-python, never hand-copied;
and the one meaning of "this type or the types below it" for every filter.
"""

from __future__ import annotations

import difflib
import typing
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


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
def thin_notification_classes() -> dict[str, type]:
    """Each thin event type → its ``...EventNotification`` class in stripe-python.

    The classes are those named in ``stripe.events.ALL_EVENT_NOTIFICATIONS``; each names
    its type in ``LOOKUP_TYPE``. Importing them all takes about a second, so this runs only
    when a thin name is looked up.
    """
    import stripe.events

    names = [ref.__forward_arg__ for ref in typing.get_args(stripe.events.ALL_EVENT_NOTIFICATIONS)]
    classes = [getattr(stripe.events, name) for name in names]
    return {cls.LOOKUP_TYPE: cls for cls in classes}


@cache
def thin_event_types() -> tuple[str, ...]:
    """Every thin event type (``v1.billing.meter.no_meter_found``, ``v2.core.account.created``),
    sorted."""
    return tuple(sorted(thin_notification_classes()))


def thin_twin_type(snapshot_type: str) -> str | None:
    """The thin type Stripe sends for a snapshot type (``customer.created`` →
    ``v1.customer.created``), or ``None`` when there is none."""
    name = "v1." + snapshot_type
    return name if name in thin_notification_classes() else None


def snapshot_twin_type(thin_type: str) -> str | None:
    """The snapshot type a v1 thin type is the twin of (``v1.customer.created`` →
    ``customer.created``), or ``None`` (v2 types, and v1 types sent only thin)."""
    name = thin_type.removeprefix("v1.")
    return name if thin_type.startswith("v1.") and name in all_event_types() else None


def _with_prefixes(types: tuple[str, ...]) -> frozenset[str]:
    names = {"*"}
    for event_type in types:
        parts = event_type.split(".")
        names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(names)


@cache
def known_names() -> frozenset[str]:
    """Every snapshot type, every whole-segment prefix of one, and ``*``."""
    return _with_prefixes(all_event_types())


@cache
def known_thin_names() -> frozenset[str]:
    """Every thin type, every whole-segment prefix of one (``v1.billing``), and ``*``."""
    return _with_prefixes(thin_event_types())


def is_thin_name(name: str) -> bool:
    """Thin types are the only ones that start with an API version segment."""
    return name.split(".", 1)[0] in ("v1", "v2")


def is_known(name: str) -> bool:
    """A snapshot or thin type, a prefix of one, or ``*``."""
    if name in known_names():
        return True
    return is_thin_name(name) and name in known_thin_names()


def closest(name: str, *, thin: bool | None = None) -> str | None:
    """The nearest real name; ``thin`` limits it to one style (``None``: both)."""
    pool: set[str] = set()
    if thin is not True:
        pool |= known_names()
    if thin is not False:
        pool |= known_thin_names()
    matches = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_type_message(
    name: str, *, thin: bool | None = None, prefix: bool = False, fallback: str = "."
) -> str:
    """``'custmer' is not a Stripe event type nor a prefix of one; did you mean 'customer'?``

    ``thin`` picks the names a hint comes from (``None``: both styles; ``True`` also says
    "thin event type"); ``prefix`` adds "nor a prefix of one"; ``fallback`` ends the
    sentence when no name is close.
    """
    what = "a thin event type" if thin else "a Stripe event type"
    hint = closest(normalize_prefix(name) or name.strip(), thin=thin)
    return (
        f"{name!r} is not {what}"
        + (" nor a prefix of one" if prefix else "")
        + (f"; did you mean {hint!r}?" if hint else fallback)
    )


# -- "this type or below it" ---------------------------------------------------------------


def normalize_prefix(text: str | None) -> str | None:
    """The type prefix a filter means: ``" invoice.* "`` → ``"invoice"``; ``None`` for
    no filter at all (``None``, ``""``, ``"*"``, ``"*.*"``)."""
    text = (text or "").strip()
    if text.endswith(".*") and len(text) > 2:
        text = text[:-2]
    return None if text in ("", "*") else text


def in_prefix(event_type: str, prefix: str | None) -> bool:
    """``event_type`` is ``prefix`` or below it in whole segments: ``invoice`` holds
    ``invoice.paid`` but not ``invoiceitem.created``. ``None`` holds every type."""
    return prefix is None or event_type == prefix or event_type.startswith(prefix + ".")


class _Bytewise(FunctionElement[str]):
    """A text column compared by bytes (``COLLATE "C"`` on PostgreSQL).

    A linguistic collation such as glibc's ``en_US.UTF-8`` ignores ``.`` when it sorts,
    which puts ``invoice.paid`` outside ``['invoice.', 'invoice/')``; byte order never does.
    SQLite compares bytes already (and knows no collation named ``C``).
    """

    type = sa.String()
    name = "bytewise"
    inherit_cache = True


@compiles(_Bytewise)
def _bytewise_default(element: _Bytewise, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(_Bytewise, "postgresql")
def _bytewise_postgresql(element: _Bytewise, compiler: Any, **kw: Any) -> str:
    return f'{compiler.process(element.clauses, **kw)} COLLATE "C"'


def type_condition(column: Any, prefix: str | None) -> Any:
    """SQL for :func:`in_prefix`: ``column = prefix OR (column >= 'prefix.' AND column <
    'prefix/')`` (``/`` is the character after ``.``), or ``true()`` for ``None``.

    A range rather than ``LIKE``: no wildcard (``_``, ``%``) to escape, case-sensitive on
    SQLite too, and a B-tree index in byte order serves it (on PostgreSQL, an index on
    ``type COLLATE "C"``, or a column declared with that collation).
    """
    if prefix is None:
        return sa.true()
    ordered = _Bytewise(column)
    return sa.or_(column == prefix, sa.and_(ordered >= prefix + ".", ordered < prefix + "/"))


def matching(pattern: str, *, thin: bool = False) -> list[str]:
    """The real types a name or pattern stands for.

    ``customer`` and ``customer.*`` both mean every type under ``customer``; an exact type
    means itself; ``*`` means every type. Unknown names give an empty list. ``thin``: the
    thin types (``v1.billing.meter.*``) instead of the snapshot ones.
    """
    types = thin_event_types() if thin else all_event_types()
    if pattern.strip() == "*":
        return list(types)
    prefix = normalize_prefix(pattern)
    return [t for t in types if in_prefix(t, prefix)] if prefix else []


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
