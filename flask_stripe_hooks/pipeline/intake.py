"""Taking an event in: a request's bytes become a verified event or a rejection, and a
verified event goes where the app's settings send it — held while paused, to the queue in
queue mode, else to its handlers now.

No HTTP here: what a delivery came to is a :class:`~flask_stripe_hooks.outcomes.Result`,
which the webhook view answers.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, OperationalError

from .. import signals
from ..errors import Rejected, UnreadableSecret
from ..outcomes import FORBIDDEN, MISSING, REJECTED, UNAVAILABLE, Result
from .attempt import UNAVAILABLE_REASON, Delivery, no_schema, notify, write_attempt
from .endpoint_cache import EndpointInfo, endpoint_by_uuid
from .guard import cut
from .queue import enqueue
from .run import bind, paused, run_handlers
from .verification import verify, verify_thin

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..events import Event
    from ..state import State

log = logging.getLogger("flask_stripe_hooks")

#: What a delivery is answered while the endpoint's signing secret cannot be decrypted
#: (``STRIPE_HOOKS_ENCRYPTION_KEY``; the log names it): 503, so Stripe retries.
UNREADABLE_REASON = (
    "signing secret could not be decrypted with STRIPE_HOOKS_ENCRYPTION_KEY, retry later"
)

#: Request headers worth keeping with a delivery (never Authorization or Cookie).
KEPT_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "Stripe-Signature")


def receive(
    state: State,
    endpoint_uuid: uuid.UUID,
    body: bytes,
    headers: Any,
    remote_addr: str | None,
) -> Result:
    """Handle one HTTP delivery. Never raises for bad input; the result says what happened."""
    started = time.perf_counter()
    if state.allowed_ips is not None and not state.allowed_ips(remote_addr):
        return Result(FORBIDDEN, "address not allowed")
    signature = headers.get("Stripe-Signature")
    if not signature:
        return Result(REJECTED, "missing Stripe-Signature header")
    session = state.db.session
    found = _load_endpoint(state, session, endpoint_uuid)
    if isinstance(found, Result):
        return found
    endpoint, cached = found
    notify(signals.delivery_received, endpoint=endpoint, remote_addr=remote_addr)

    delivery = Delivery(
        endpoint=endpoint,
        body=body,
        headers={k: headers[k] for k in KEPT_HEADERS if k in headers},
        remote_addr=remote_addr,
        received_at=datetime.now(timezone.utc),
        started=started,
        keep=state.keep_body,
    )
    try:
        try:
            event = _verify(state, endpoint, body, signature)
        except Rejected:
            if not cached:
                raise
            # The cached row may be out of date (a rotated secret): read it and try again.
            found = _load_endpoint(state, session, endpoint_uuid, fresh=True)
            if isinstance(found, Result):
                return found
            endpoint, cached = found
            delivery.endpoint = endpoint
            event = _verify(state, endpoint, body, signature)
    except Rejected as exc:
        return _rejected(state, session, delivery, exc.reason)
    return route(state, session, event, endpoint, delivery)


def store_event(state: State, event: Event, endpoint: EndpointInfo | None = None) -> Result:
    """Store and process an event that did not come through a webhook (``fetch-missed``).

    The same path as a delivery without its request: in queue mode the event is stored as
    pending and handed to the callback, otherwise its handlers run now. An event stored
    already is processed only if it has not been.
    """
    return route(state, state.db.session, event, endpoint, None)


def route(
    state: State,
    session: Session,
    event: Event,
    endpoint: EndpointInfo | None,
    delivery: Delivery | None,
) -> Result:
    """A verified event: held while paused, queued in queue mode, else run now."""
    bind(state, event, endpoint)
    endpoint_id = endpoint.id if endpoint is not None else None
    if paused(state, endpoint):
        return enqueue(state, session, event, delivery, endpoint_id, hold=True)
    if state.event_callback is not None:
        return enqueue(state, session, event, delivery, endpoint_id)
    return run_handlers(state, session, event, endpoint, delivery)


def _rejected(state: State, session: Session, delivery: Delivery, reason: str) -> Result:
    """A delivery that failed verification: kept for audit, cut to a prefix, within the
    flood limits (a flood of bad signatures cannot fill the disk)."""
    error = reason
    if state.rejected_prefix is not None:
        delivery.body, delivery.headers, note = cut(
            delivery.body, delivery.headers, state.rejected_prefix
        )
        if note:  # after the reason: what was answered is how the row's error starts
            error = f"{reason} ({note})"
    limit = state.rejected_limit
    state.notices.rejected(delivery.endpoint, reason)
    try:
        if limit is None or limit.keep(delivery.endpoint.id, delivery.size(REJECTED)):
            write_attempt(state, session, REJECTED, delivery, error=error)
        else:
            session.rollback()
    except DBAPIError as exc:
        session.rollback()
        if not (isinstance(exc, OperationalError) or no_schema(state, exc)):
            raise
        return Result(UNAVAILABLE, UNAVAILABLE_REASON)
    return Result(REJECTED, reason, endpoint=delivery.endpoint)


def _load_endpoint(
    state: State, session: Session, endpoint_uuid: uuid.UUID, *, fresh: bool = False
) -> tuple[EndpointInfo, bool] | Result:
    """The enabled endpoint (and whether it came from the cache), or the result to answer."""
    try:
        endpoint, cached = endpoint_by_uuid(state, session, endpoint_uuid, fresh=fresh)
    except DBAPIError as exc:
        session.rollback()
        if no_schema(state, exc):  # the migration has not run: logged once a minute
            return Result(UNAVAILABLE, UNAVAILABLE_REASON)
        if not isinstance(exc, OperationalError):
            raise
        log.warning("database unavailable while loading endpoint %s", endpoint_uuid)
        return Result(UNAVAILABLE, UNAVAILABLE_REASON)
    except UnreadableSecret:  # logged where it is found, naming the key: 503, Stripe retries
        session.rollback()
        return Result(UNAVAILABLE, UNREADABLE_REASON)
    if endpoint is None or not endpoint.enabled:
        session.rollback()
        return Result(MISSING, "unknown endpoint")
    return endpoint, cached


def _verify(state: State, endpoint: EndpointInfo, body: bytes, signature: str) -> Event:
    tolerance = state.tolerance if endpoint.tolerance is None else endpoint.tolerance
    if endpoint.payload == "thin":  # a v2 event destination: stripe-python parses it
        return verify_thin(
            body,
            signature,
            endpoint.secrets,
            tolerance=tolerance,
            livemode=endpoint.livemode,
            account=endpoint.account,
        )
    return verify(
        body, signature, endpoint.secrets, tolerance=tolerance, livemode=endpoint.livemode
    )
