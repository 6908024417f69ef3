"""Twins: one business event that Stripe sends twice, as a snapshot event (``customer.created``,
``evt_S``) and as a thin event (``v1.customer.created``) whose ``snapshot_event`` is ``evt_S``.

Whichever is processed first runs its handlers; the other is stored with status ``twin``,
answered 200, and runs nothing. The twin key is the snapshot event's id, that is the primary
key of its row, so the gate costs a snapshot event nothing:

- a thin event that names ``evt_S`` claims it in its own transaction, by inserting ``evt_S``'s
  row as a placeholder (status ``twin``), or by taking over a row of ``evt_S`` the pipeline is
  not done with (failed, pending); when ``evt_S`` is done, the thin event is the twin;
- a snapshot event meets that row at its usual ``INSERT``: the event is stored already, so it
  is not run; its delivery fills the placeholder with its data.

On PostgreSQL, concurrent twins wait on the one row, as concurrent duplicates do; a claim
rolled back with a failed handler frees the business event for the other half.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from .. import event_types
from ..outcomes import TWIN
from .attempt import event_row
from .storage import adopt_placeholder, claim_twin, mark_twin

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..events import Event
    from ..state import State
    from .endpoint_cache import EndpointInfo

#: The phases of a thin endpoint made by ``migrate-to-thin`` (``WebhookEndpoint.migration``):
#: its thin events are rolled back (shadow), run with the twins rule beside the snapshot
#: endpoint (cutover), then run alone once the snapshot endpoint is retired (done).
SHADOW_PHASE, CUTOVER_PHASE, DONE_PHASE = "shadow", "cutover", "done"
PHASES = (SHADOW_PHASE, CUTOVER_PHASE, DONE_PHASE)
#: The phases in which the snapshot endpoint still delivers.
PAIRED = (SHADOW_PHASE, CUTOVER_PHASE)


def look_up(event: Event, endpoint: EndpointInfo | None) -> None:
    """A v1 thin event on an endpoint moving to thin events whose notification does not say
    which snapshot event it is the twin of: fetch the full event, which does (one API call,
    reused by handlers that call ``fetch_event()``)."""
    if (
        event.thin
        and endpoint is not None
        and endpoint.phase in PAIRED
        and "snapshot_event" not in event.data
        and event_types.snapshot_twin_type(event.type) is not None
    ):
        event.fetch_event()  # type: ignore[attr-defined]


def settle(state: State, session: Session, event: Event, now: datetime) -> str | None:
    """For a thin event with a ``snapshot_event``: claim the business event, or, when its
    snapshot half is done, record this one as its twin. Returns the snapshot event's id when
    this event is the twin (run nothing), else ``None`` (run the handlers)."""
    snapshot_id = event.snapshot_event
    if snapshot_id is None:
        return None
    placeholder = {
        **event_row(state, event, None, now),
        "id": snapshot_id,
        "type": event_types.snapshot_twin_type(event.type) or event.type.removeprefix("v1."),
        "api_version": "",
        "data": {},
        "request_id": None,
        "idempotency_key": None,
        "twin_id": event.id,
        "status": TWIN,
        "attempts": 0,
    }
    if claim_twin(session, placeholder):
        return None
    mark_twin(session, event.id, snapshot_id)
    return snapshot_id


def adopt(
    state: State, session: Session, event: Event, endpoint_id: int | None, now: datetime
) -> str | None:
    """A snapshot event found stored already: when it is the placeholder its thin twin left,
    store what was delivered in it. Returns the twin's id, or ``None`` (a plain duplicate)."""
    if event.thin:
        return None
    values = event_row(state, event, endpoint_id, now)
    for key in ("id", "twin_id"):
        values.pop(key)
    return adopt_placeholder(session, event.id, values)
