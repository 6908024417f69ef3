"""``migrate-to-thin``: move a snapshot endpoint to thin events, as one guided path.

Stripe's way is two destinations side by side; this module walks them through four steps,
recorded on the thin endpoint (``WebhookEndpoint.migration``, ``{"from": <the snapshot
endpoint's uuid>, "phase": ...}``):

1. **start** (:func:`start`): a thin event destination mirroring the snapshot endpoint's
   types (``customer.created`` → ``v1.customer.created``), in the **shadow** phase: its thin
   events are verified and stored, and their handlers run in a transaction that is always
   rolled back (their ``on_commit`` callbacks never run); a handler that raises is recorded,
   and Stripe is answered 200. The snapshot endpoint does the work as before.
2. **cutover** (:func:`cutover`): thin events run for real, beside the snapshot endpoint;
   each business event runs once, through whichever of its twins arrives first.
3. **retire** (:func:`retire`): the snapshot endpoint is disabled, on Stripe and here (its
   history stays); the phase is **done**.

:func:`report` says where a move stands and what is left (``doctor`` shows it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from . import endpoints, event_types
from .errors import EndpointError
from .events import THIN
from .models import StripeEvent, WebhookEndpoint
from .outcomes import FINAL_STATUSES, PROCESSED, SHADOW, TWIN
from .pipeline import CUTOVER_PHASE, DONE_PHASE, SHADOW_PHASE
from .state import get_state
from .utils import utcnow

if TYPE_CHECKING:
    from .state import State

#: The window ``report`` counts events in (as ``doctor``'s other checks do).
WINDOW = timedelta(hours=24)
NEXT = {
    SHADOW_PHASE: "flask stripe-hooks migrate-to-thin {uuid} --cutover",
    CUTOVER_PHASE: "flask stripe-hooks migrate-to-thin {uuid} --retire",
}


def mirror(enabled_events: list[str]) -> tuple[list[str], list[str]]:
    """The thin types that mirror a snapshot endpoint's types, and the snapshot types that
    have no thin twin (they stay snapshot-only). ``*`` is every snapshot type."""
    snapshot = event_types.all_event_types() if "*" in enabled_events else enabled_events
    thin: list[str] = []
    alone: list[str] = []
    for name in snapshot:
        twin = event_types.thin_twin_type(name)
        (thin if twin else alone).append(twin or name)
    return sorted(thin), sorted(alone)


def thin_of(snapshot: WebhookEndpoint) -> WebhookEndpoint | None:
    """The thin endpoint ``migrate-to-thin`` made for ``snapshot``, if any."""
    session = get_state().db.session
    rows = session.execute(
        sa.select(WebhookEndpoint).where(WebhookEndpoint.payload == THIN)
    ).scalars()
    mine = [e for e in rows if (e.migration or {}).get("from") == str(snapshot.uuid)]
    return mine[-1] if mine else None


def _snapshot(value: Any) -> WebhookEndpoint:
    endpoint = endpoints.get_endpoint(value)
    if endpoint.thin:
        raise EndpointError(
            f"Endpoint {endpoint.uuid} receives thin events already; name the snapshot"
            " endpoint to move."
        )
    return endpoint


def _moving(value: Any, phase: str) -> tuple[WebhookEndpoint, WebhookEndpoint]:
    snapshot = _snapshot(value)
    thin = thin_of(snapshot)
    if thin is None:
        raise EndpointError(
            f"Endpoint {snapshot.uuid} is not being moved to thin events; start with"
            f" 'flask stripe-hooks migrate-to-thin {snapshot.uuid}'."
        )
    current = (thin.migration or {}).get("phase")
    if current != phase:
        raise EndpointError(
            f"The move of {snapshot.uuid} is in the {current} phase, not {phase}"
            + (f"; next: {NEXT[current].format(uuid=snapshot.uuid)}." if current in NEXT else ".")
        )
    return snapshot, thin


def _set_phase(thin: WebhookEndpoint, phase: str) -> None:
    before = dict(thin.migration or {})
    thin.migration = {**before, "phase": phase}
    endpoints.commit("the new phase", thin, "migration", {"phase": [before.get("phase"), phase]})


def start(value: Any, *, base_url: str | None = None) -> WebhookEndpoint:
    """Create the thin endpoint mirroring a snapshot endpoint's types, in the shadow phase.
    A move started already is returned as it is."""
    snapshot = _snapshot(value)
    existing = thin_of(snapshot)
    if existing is not None:
        return existing
    types, _ = mirror(list(snapshot.enabled_events))
    if not types:
        raise EndpointError(
            f"None of the types of {snapshot.uuid} ({', '.join(snapshot.enabled_events)}) has"
            " a thin twin in stripe-python; there is nothing to move."
        )
    path = get_state().webhook_path(snapshot.uuid)
    base = base_url or (snapshot.url[: -len(path)] if snapshot.url.endswith(path) else "")
    if not base:
        raise EndpointError(
            f"Endpoint {snapshot.uuid} has no URL of this app recorded; pass --base-url."
        )
    description = f"{snapshot.description} (thin events)".strip()
    return endpoints.create_endpoint(
        base_url=base,
        events=types,
        livemode=snapshot.livemode,
        account=snapshot.account,
        description=description,
        connect=snapshot.connect,
        payload=THIN,
        migration={"from": str(snapshot.uuid), "phase": SHADOW_PHASE},
    )


def uncovered(state: State, types: list[str]) -> list[tuple[str, str]]:
    """``(snapshot type, thin type)`` pairs that a handler of the snapshot type listens to
    and no handler of the thin type does (``*`` handlers count for both). After cutover
    whichever twin comes first runs: these would run nothing half of the time."""
    names = {name for name, sig in state.registry._signals.items() if sig.receivers}

    def heard(event_type: str) -> bool:
        parts = event_type.split(".")
        return any(".".join(parts[:i]) in names for i in range(1, len(parts) + 1))

    pairs = [(event_types.snapshot_twin_type(t), t) for t in types]
    return [(s, t) for s, t in pairs if s is not None and heard(s) and not heard(t)]


def cutover(value: Any, *, force: bool = False) -> WebhookEndpoint:
    """Shadow → cutover: thin events run for real, with the twins rule. Refused while a
    handler of a snapshot type has no thin counterpart, or (without ``force``) while thin
    events failed in their handlers during the shadow phase."""
    snapshot, thin = _moving(value, SHADOW_PHASE)
    state = get_state()
    missing = uncovered(state, list(thin.enabled_events))
    if missing:
        listed = ", ".join(f"{s} (no handler of {t})" for s, t in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise EndpointError(
            f"Handlers listen to {listed}{more}: after cutover, whichever twin arrives first"
            " runs, so these would be skipped. Add thin handlers first (docs: thin-events)."
        )
    failed = report(state, thin).shadow_failed
    if failed and not force:
        raise EndpointError(
            f"{failed} thin event(s) failed in their handlers during the shadow phase (see"
            " 'flask stripe-hooks events --status shadow'); fix the handlers, or pass --force."
        )
    _set_phase(thin, CUTOVER_PHASE)
    return thin


def retire(value: Any) -> WebhookEndpoint:
    """Cutover → done: disable the snapshot endpoint, on Stripe and here (its history
    stays; delete it with ``delete-endpoint`` once it is no longer needed)."""
    snapshot, thin = _moving(value, CUTOVER_PHASE)
    if snapshot.enabled:
        endpoints.update_endpoint(snapshot, enabled=False)
    _set_phase(endpoints.get_endpoint(thin.uuid), DONE_PHASE)
    return thin


@dataclass
class Report:
    """Where a move to thin events stands (counts over the last :data:`WINDOW`)."""

    snapshot_uuid: str
    thin_uuid: str
    phase: str
    #: Snapshot types with no thin twin: they stay on the snapshot endpoint.
    snapshot_only: list[str] = field(default_factory=list)
    shadow: int = 0
    #: Shadow events whose snapshot twin is stored here (it did the work).
    shadow_paired: int = 0
    shadow_failed: int = 0
    #: Business events with twins that ran through each kind.
    ran_thin: int = 0
    ran_snapshot: int = 0

    @property
    def next_step(self) -> str:
        if self.phase in NEXT:
            return NEXT[self.phase].format(uuid=self.snapshot_uuid)
        return f"flask stripe-hooks delete-endpoint {self.snapshot_uuid} (when its history can go)"

    def lines(self) -> list[str]:
        out = [f"Moving {self.snapshot_uuid} to thin events ({self.thin_uuid}): {self.phase}."]
        if self.phase == SHADOW_PHASE:
            out.append(
                f"In the last 24 hours: {self.shadow} thin event(s) in shadow,"
                f" {self.shadow_paired} with their snapshot twin here,"
                f" {self.shadow_failed} failed in their handlers."
            )
        elif self.phase == CUTOVER_PHASE:
            out.append(
                f"In the last 24 hours: {self.ran_thin} event(s) ran through thin events,"
                f" {self.ran_snapshot} through their snapshot twin."
            )
        if self.snapshot_only:
            shown = ", ".join(self.snapshot_only[:5])
            more = f" and {len(self.snapshot_only) - 5} more" if len(self.snapshot_only) > 5 else ""
            out.append(f"Types with no thin twin (they stay on snapshot events): {shown}{more}.")
        out.append(f"Next: {self.next_step}")
        return out


def report(state: State, thin: WebhookEndpoint) -> Report:
    """Where the move that made ``thin`` stands; reads the last :data:`WINDOW` only."""
    migration = thin.migration or {}
    session = state.db.session
    snapshot = session.execute(
        sa.select(WebhookEndpoint).where(WebhookEndpoint.uuid == _uuid(migration.get("from")))
    ).scalar_one_or_none()
    found = Report(
        snapshot_uuid=str(migration.get("from")),
        thin_uuid=str(thin.uuid),
        phase=str(migration.get("phase")),
        snapshot_only=mirror(list(snapshot.enabled_events))[1] if snapshot is not None else [],
    )
    since = utcnow() - WINDOW
    mine = sa.and_(StripeEvent.endpoint_id == thin.id, StripeEvent.received_at >= since)
    twin = aliased(StripeEvent)
    paired = sa.and_(twin.status.in_(FINAL_STATUSES), twin.status != SHADOW)
    found.shadow, found.shadow_failed, found.shadow_paired = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.count().filter(StripeEvent.last_error.is_not(None)),
            sa.func.count(twin.id).filter(paired),
        )
        .select_from(StripeEvent)
        .outerjoin(twin, twin.id == StripeEvent.twin_id)
        .where(mine, StripeEvent.status == SHADOW)
    ).one()
    found.ran_thin, found.ran_snapshot = session.execute(
        sa.select(
            sa.func.count().filter(StripeEvent.status == PROCESSED),
            sa.func.count().filter(StripeEvent.status == TWIN),
        ).where(mine, StripeEvent.twin_id.is_not(None))
    ).one()
    return found


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
