"""Backfill: the work behind ``fetch-missed`` (``--undelivered``, ``--connected-account``,
``--all-connected``) and the Celery ``reconcile`` task. Reads ``GET /v1/events`` of an
account, as Stripe keeps them for 30 days, and runs the events not stored here through
:mod:`flask_stripe_hooks.pipeline`, as if they had been delivered.

A connected account's events are read as that account (``Stripe-Account``, with the
platform's key): the platform's own ``/v1/events`` never lists them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import stripe
from flask import current_app

from . import event_types, signals, stripe_api
from .errors import NotAnEvent, StripeAPIError
from .events import Event
from .models import event_table
from .pipeline import store_event
from .recovery import Summary
from .utils import utcnow

if TYPE_CHECKING:
    from .state import State

log = logging.getLogger("flask_stripe_hooks")

#: Stripe keeps events for 30 days; ``fetch-missed`` cannot look further back.
EVENTS_KEPT = timedelta(days=30)


@dataclass
class Missed:
    """What ``fetch-missed`` found in one account: how many events Stripe listed, and those
    not stored."""

    seen: int = 0
    events: list[Event] = field(default_factory=list)
    #: The connected account read (``acct_...``); ``""``: the account of the key.
    connected: str = ""


def connected_accounts(state: State, *, since: timedelta, livemode: bool = False) -> list[str]:
    """The connected accounts of the snapshot events received within ``since`` in this mode:
    the accounts ``fetch-missed --all-connected`` reads."""
    c = event_table.c
    query = (
        sa.select(c.account)
        .where(
            c.received_at >= utcnow() - since,
            c.account != "",
            c.livemode.is_(livemode),
            ~c.type.startswith("v1."),  # thin events: /v1/events does not hold them
            ~c.type.startswith("v2."),
        )
        .distinct()
        .order_by(c.account)
    )
    try:
        return list(state.db.session.execute(query).scalars())
    finally:
        state.db.session.rollback()


def _list_params(
    since: timedelta, type_prefix: str | None, undelivered: bool = False
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "created": {"gte": int((utcnow() - since).timestamp())},
        "limit": 100,
    }
    if undelivered:  # events with a delivery Stripe still counts as failed
        params["delivery_success"] = "false"
    prefix = event_types.normalize_prefix(type_prefix)
    if prefix:
        names = event_types.matching(prefix)
        if names == [prefix]:
            params["type"] = prefix
        elif 0 < len(names) <= 20:
            params["types"] = names
        else:
            params["type"] = prefix + ".*"
    return params


def find_missed(
    state: State,
    *,
    since: timedelta,
    type_prefix: str | None = None,
    account: str = "",
    livemode: bool = False,
    undelivered: bool = False,
    connected: str = "",
) -> Missed:
    """Read ``GET /v1/events`` (every page) and keep the events not stored, oldest first.

    With ``undelivered``, only events Stripe has not delivered successfully to some
    endpoint (``delivery_success=false``): the ones worth reconciling on a schedule.
    ``connected``: read the events of this connected account (as it, ``Stripe-Account``),
    with the key of ``account``, the platform's.

    Raises :class:`~flask_stripe_hooks.errors.StripeAPIError` with a message to act on.
    """
    if since > EVENTS_KEPT:
        raise StripeAPIError("Stripe keeps events for 30 days; use --since 30d or less.", "since")
    client = stripe_api.client_as(state, account=account, livemode=livemode, connected=connected)
    params = _list_params(since, type_prefix, undelivered)
    prefix = event_types.normalize_prefix(type_prefix)

    def parse(payload: dict[str, Any]) -> Event:
        if connected:  # as a Connect endpoint would have received it
            payload.setdefault("account", connected)
        return Event.from_payload(payload)

    with reading_events(state, account, livemode, "Events", connected=connected):
        listing = client.v1.events.list(params)  # type: ignore[arg-type]
        missed = Missed(connected=connected)
        return gather(state, listing.auto_paging_iter(), parse, prefix, livemode, missed)


@contextmanager
def reading_events(
    state: State, account: str, livemode: bool, what: str, *, connected: str = ""
) -> Iterator[None]:
    """stripe-python's errors while listing events → a ``StripeAPIError`` to act on (a key
    that may not read ``what``, a connected account that is not the platform's); the session
    holds no transaction afterwards."""
    try:
        yield
    except stripe.PermissionError as exc:
        if connected and getattr(exc.error, "code", None) == "account_invalid":
            raise StripeAPIError(
                f"Stripe refused to act as {connected}: it is not an account connected to"
                " this platform (or it disconnected)."
            ) from None
        raise StripeAPIError(
            "The key may not read events; use a secret key, or give the restricted key"
            f" read access to {what}."
        ) from None
    except stripe.StripeError as exc:
        raise stripe_api.translate(exc, state, account=account, livemode=livemode) from None
    finally:
        state.db.session.rollback()


def gather(
    state: State,
    items: Iterable[Any],
    parse: Callable[[dict[str, Any]], Event],
    prefix: str | None,
    livemode: bool,
    missed: Missed | None = None,
) -> Missed:
    """The events Stripe listed (``items``, read page by page) that are of ``prefix`` and
    this mode and not stored here, oldest first; an item ``parse`` refuses is logged."""
    missed = missed or Missed()
    session = state.db.session
    batch: list[Event] = []
    for item in items:
        missed.seen += 1
        try:
            event = parse(item.to_dict())
        except NotAnEvent as exc:
            log.warning("fetch-missed: skipped an item Stripe listed: %s", exc)
            continue
        if event_types.in_prefix(event.type, prefix) and event.livemode == livemode:
            batch.append(event)
        if len(batch) >= 100:
            missed.events += _not_stored(session, batch)
            batch = []
    missed.events += _not_stored(session, batch)
    missed.events.sort(key=lambda e: (e.created or 0, e.id))
    return missed


def find_missed_in(
    state: State, connected: Sequence[str], **options: Any
) -> tuple[list[Missed], list[tuple[str, str]]]:
    """:func:`find_missed` (with ``options``) in each of the ``connected`` accounts (``""``:
    the key's own). Returns what was found, and ``(account, reason)`` for each connected
    account Stripe refused: the others are read all the same. A refusal of the key's own
    account, or a bad option, raises :class:`~flask_stripe_hooks.errors.StripeAPIError`."""
    if options.get("since", EVENTS_KEPT) > EVENTS_KEPT:
        raise StripeAPIError("Stripe keeps events for 30 days; use --since 30d or less.", "since")
    found, refused = [], []
    for account in connected:
        try:
            found.append(find_missed(state, connected=account, **options))
        except StripeAPIError as exc:
            if not account:
                raise
            refused.append((account, exc.message))
    return found, refused


def _not_stored(session: Any, events: list[Event]) -> list[Event]:
    if not events:
        return []
    ids = [e.id for e in events]
    stored = set(
        session.execute(sa.select(event_table.c.id).where(event_table.c.id.in_(ids))).scalars()
    )
    seen: set[str] = set()
    out = []
    for event in events:
        if event.id not in stored and event.id not in seen:
            seen.add(event.id)
            out.append(event)
    return out


def store_missed(state: State, events: Iterable[Event], endpoint: Any = None) -> Summary:
    """Store and process (or, in queue mode, queue) events that never arrived; ``endpoint``
    (an ``EndpointInfo``) is the one they are recorded for, whose account they fetch with."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    summary = Summary()
    for event in events:
        with app.app_context():
            summary.add(store_event(state, event, endpoint))
    return summary


def reconcile(
    state: State, *, since: timedelta = EVENTS_KEPT, account: str = "", livemode: bool = False
) -> tuple[Missed, Summary]:
    """Store and process the events Stripe has not delivered successfully
    (``delivery_success=false``) and that are not stored here: ``fetch-missed
    --undelivered``, and the Celery task on a schedule."""
    missed = find_missed(state, since=since, account=account, livemode=livemode, undelivered=True)
    summary = store_missed(state, missed.events)
    reconciled([missed], summary, undelivered=True)
    return missed, summary


def reconciled(found: Sequence[Missed], summary: Summary, *, undelivered: bool) -> None:
    """Send :data:`~flask_stripe_hooks.signals.events_reconciled` for a ``fetch-missed`` run
    (of one account or several: the counts are their sums; no account is named, so a
    metric made from it never has a label per account)."""
    if signals.events_reconciled.receivers:
        signals.events_reconciled.send(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            seen=sum(missed.seen for missed in found),
            missing=sum(len(missed.events) for missed in found),
            counts=dict(summary.counts),
            undelivered=undelivered,
        )
