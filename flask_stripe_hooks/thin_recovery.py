"""``fetch-missed --payload thin``: read the thin events Stripe keeps (``GET /v2/core/events``,
every page, a ``created`` range) and store and process those that never arrived here.

The same path as snapshot events (:mod:`flask_stripe_hooks.backfill`): each event goes
through :func:`flask_stripe_hooks.pipeline.store_event`, so the twins rule, queue mode and a
thin endpoint's shadow phase apply to it as to a delivery. The listed event is the full
``v2.core.event`` (with ``data``, ``changes`` and ``snapshot_event``); that is what is stored.

Stripe's v2 events API has no filter on delivery success: there is no ``--undelivered`` for
thin events; every event of the range is listed and those stored here are left out.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from . import event_types, stripe_api
from .backfill import EVENTS_KEPT, Missed, gather, reading_events
from .errors import StripeAPIError
from .events import THIN, ThinEvent
from .models import WebhookEndpoint
from .pipeline import EndpointInfo, endpoint_by_id
from .utils import utcnow

if TYPE_CHECKING:
    from .state import State


def _rfc3339(delta: timedelta) -> str:
    return (utcnow() - delta).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def list_params(since: timedelta, type_prefix: str | None) -> dict[str, Any]:
    """``GET /v2/core/events``'s parameters: ``created[gte]`` and, when the prefix names at
    most 20 types (the API's limit), ``types``; a wider prefix is filtered here."""
    params: dict[str, Any] = {"created": {"gte": _rfc3339(since)}, "limit": 100}
    prefix = event_types.normalize_prefix(type_prefix)
    if prefix:
        names = event_types.matching(prefix, thin=True)
        if 0 < len(names) <= 20:
            params["types"] = names
    return params


def thin_endpoint(
    state: State, *, account: str, livemode: bool, named: WebhookEndpoint | None = None
) -> EndpointInfo | None:
    """The thin endpoint the fetched events are recorded for (its account fetches their data,
    its phase applies): ``named``, else the only enabled one of this account and mode, else
    none. A ``named`` endpoint of the wrong kind raises ``StripeAPIError``."""
    session = state.db.session
    if named is not None:
        if not named.thin or named.account != account or named.livemode != livemode:
            raise StripeAPIError(
                f"Endpoint {named.uuid} is not a thin {'live' if livemode else 'test'}-mode"
                f" endpoint of {'account ' + repr(account) if account else 'the default account'}."
            )
        found = [named.id]
    else:
        query = sa.select(WebhookEndpoint.id).where(
            WebhookEndpoint.payload == THIN,
            WebhookEndpoint.account == account,
            WebhookEndpoint.livemode == livemode,
            WebhookEndpoint.status == "enabled",
        )
        found = list(session.execute(query).scalars())
    info = endpoint_by_id(session, found[0]) if len(found) == 1 else None
    session.rollback()
    return info


def find_missed_thin(
    state: State,
    *,
    since: timedelta,
    type_prefix: str | None = None,
    account: str = "",
    livemode: bool = False,
    endpoint: EndpointInfo | None = None,
) -> Missed:
    """Read ``GET /v2/core/events`` through stripe-python (every page, created in the last
    ``since``) and keep the thin events not stored here, oldest first.

    Raises :class:`~flask_stripe_hooks.stripe_api.StripeAPIError` with a message to act on.
    """
    if since > EVENTS_KEPT:
        raise StripeAPIError("Stripe keeps events for 30 days; use --since 30d or less.", "since")
    client = stripe_api.client_for(state, account=account, livemode=livemode)
    prefix = event_types.normalize_prefix(type_prefix)
    client_account = endpoint.account if endpoint is not None else account

    def parse(item: dict[str, Any]) -> ThinEvent:
        return ThinEvent.from_payload(item, client_account)

    with reading_events(state, account, livemode, "Events (v2)"):
        listing = client.v2.core.events.list(list_params(since, type_prefix))  # type: ignore[arg-type]
        return gather(state, listing.auto_paging_iter(), parse, prefix, livemode)
