"""The v2 lists of :class:`~flask_stripe_hooks.testing.FakeStripe`, in Stripe's wire format:
``GET /v2/core/events`` and ``GET /v2/core/event_destinations``.

A v2 list answers ``{"data": [...], "next_page_url": ..., "previous_page_url": null}``,
newest first. The next page's URL carries an opaque ``page`` token that holds the filters, as
Stripe's does: stripe-python follows ``next_page_url`` without sending the filters again.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from ._wire import StripeError

#: The filters behind each page token handed out (the fake forgets them on ``reset``).
Pages = dict[str, tuple[dict[str, Any], int]]


def _time(value: Any, name: str) -> datetime:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise StripeError(
            400, f"Invalid {name}: must be a timestamp in RFC 3339 format.", param=name
        ) from None


def _limit(query: dict[str, Any]) -> int:
    try:
        limit = int(query.get("limit") or 20)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise StripeError(400, "Invalid limit: must be between 1 and 100.", param="limit")
    return limit


def _page(
    found: list[dict[str, Any]], query: dict[str, Any], offset: int, path: str, pages: Pages
) -> dict[str, Any]:
    limit = _limit(query)
    more = len(found) > offset + limit
    next_url = None
    if more:
        token = secrets.token_hex(8)
        pages[token] = (query, offset + limit)
        next_url = f"{path}?page={token}"
    return {
        "data": found[offset : offset + limit],
        "next_page_url": next_url,
        "previous_page_url": None,
    }


def _resume(query: dict[str, Any], pages: Pages) -> tuple[dict[str, Any], int]:
    """The filters and offset of a ``page`` token, or the query as it came."""
    token = query.get("page")
    if token is None:
        return query, 0
    if token not in pages:
        raise StripeError(400, "Invalid page: the page token is not valid.", param="page")
    return pages[token]


def list_events(
    events: Iterable[dict[str, Any]], livemode: bool, query: dict[str, Any], pages: Pages
) -> dict[str, Any]:
    """``GET /v2/core/events``: ``created[gt|gte|lt|lte]`` (RFC 3339), ``types[]`` (at most
    20), ``object_id`` (the related object's id), ``limit``, ``page``."""
    query, offset = _resume(query, pages)
    created = query.get("created") or {}
    if not isinstance(created, dict):
        raise StripeError(400, "Invalid created: use created[gte] and the like.", param="created")
    checks: dict[str, Callable[[datetime, datetime], bool]] = {
        "gte": lambda c, v: c >= v,
        "gt": lambda c, v: c > v,
        "lte": lambda c, v: c <= v,
        "lt": lambda c, v: c < v,
    }
    bounds = []
    for op, value in created.items():
        if op not in checks:
            raise StripeError(400, f"Invalid created[{op}].", param="created")
        bounds.append((checks[op], _time(value, f"created[{op}]")))
    types = query.get("types")
    if types is not None and (not isinstance(types, list) or len(types) > 20):
        raise StripeError(400, "Invalid types: at most 20 event types.", param="types")
    object_id = query.get("object_id")

    def keep(event: dict[str, Any]) -> bool:
        when = _time(event["created"], "created")
        related = event.get("related_object") or {}
        return (
            event["livemode"] == livemode
            and all(check(when, bound) for check, bound in bounds)
            and (not types or event["type"] in types)
            and (object_id is None or related.get("id") == object_id)
        )

    found = sorted((e for e in events if keep(e)), key=lambda e: (e["created"], e["id"]))
    return _page(found[::-1], query, offset, "/v2/core/events", pages)


def list_destinations(
    destinations: Iterable[dict[str, Any]],
    livemode: bool,
    query: dict[str, Any],
    pages: Pages,
    shown: Callable[[dict[str, Any], Any], dict[str, Any]],
) -> dict[str, Any]:
    """``GET /v2/core/event_destinations``: ``include[]`` (``webhook_endpoint.url``),
    ``limit``, ``page``; each destination as :meth:`FakeStripe._shown` shows it (never its
    secret)."""
    query, offset = _resume(query, pages)
    include = [i for i in query.get("include") or [] if i == "webhook_endpoint.url"]
    mine = [d for d in destinations if d["livemode"] == livemode]
    found = sorted(mine, key=lambda d: (d["created"], d["id"]), reverse=True)
    page = _page(found, query, offset, "/v2/core/event_destinations", pages)
    page["data"] = [shown(d, include) for d in page["data"]]
    return page
