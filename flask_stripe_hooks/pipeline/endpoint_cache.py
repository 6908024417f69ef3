"""What the pipeline knows of an endpoint (:class:`EndpointInfo`), and the per-app cache of it.

Reading the endpoint row is a round trip on every delivery. Each app keeps the enabled
endpoints it has read for ``STRIPE_HOOKS_ENDPOINT_CACHE`` seconds (``0``: never), never past
the expiry of one of their secrets. What keeps it honest:

- any rejection by a cached endpoint re-reads the row and verifies again (the pipeline asks
  with ``fresh=True``), so a new secret (a rotation) or a changed mode or tolerance takes
  effect on the first delivery;
- any write to an endpoint in this process (ORM, or an UPDATE/DELETE through the session, as
  the CLI, the admin and tests do) empties every cache at once, and again when its
  transaction ends;
- a change made by another process (disabling an endpoint, removing a secret) takes effect
  within the cache's lifetime.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..crypto import opener
from ..errors import UnreadableSecret
from ..models import WebhookEndpoint, active_secrets, endpoint_table, seconds_to_expiry
from ..utils import mode_name

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..state import State

log = logging.getLogger("flask_stripe_hooks")


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """What the pipeline needs of an endpoint; handlers get it as ``endpoint=``."""

    id: int
    uuid: uuid.UUID
    livemode: bool
    account: str
    stripe_id: str | None
    enabled: bool
    tolerance: int | None
    #: The active signing secrets, decrypted; empty for a re-run (nothing to verify).
    secrets: tuple[str, ...] = ()
    #: ``"snapshot"`` or ``"thin"``: the only payload style the endpoint accepts.
    payload: str = "snapshot"
    #: Paused: its events are stored as pending and run on ``resume``.
    paused: bool = False
    #: A thin endpoint made by ``migrate-to-thin``: ``"shadow"``, ``"cutover"`` or ``"done"``.
    phase: str | None = None

    @property
    def mode(self) -> str:
        return mode_name(self.livemode)

    def __repr__(self) -> str:  # never the secrets
        return f"EndpointInfo(id={self.id}, uuid={self.uuid}, mode={self.mode})"


#: The endpoint columns :func:`info` reads.
COLUMNS = (
    endpoint_table.c.id,
    endpoint_table.c.uuid,
    endpoint_table.c.livemode,
    endpoint_table.c.account,
    endpoint_table.c.stripe_id,
    endpoint_table.c.status,
    endpoint_table.c.tolerance,
    endpoint_table.c.secrets,
    endpoint_table.c.payload,
    endpoint_table.c.paused,
    endpoint_table.c.migration,
)
_select_by_uuid = sa.select(*COLUMNS).where(endpoint_table.c.uuid == sa.bindparam("uuid"))
_select_by_id = sa.select(*COLUMNS).where(endpoint_table.c.id == sa.bindparam("id"))


def info(row: Any, state: State | None) -> EndpointInfo:
    """The endpoint of ``row``, its secrets decrypted (:class:`~.crypto.UnreadableSecret`
    when ``STRIPE_HOOKS_ENCRYPTION_KEY`` cannot decrypt them; logged, naming the key).
    Without ``state``, its secrets are left out."""
    secrets: tuple[str, ...] = ()
    try:
        if state is not None:
            secrets = active_secrets(row.secrets, datetime.now(timezone.utc), opener(state))
    except UnreadableSecret as exc:
        log.error("endpoint %s: %s Answering 503 until it is fixed.", row.uuid, exc)
        raise
    return EndpointInfo(
        id=row.id,
        uuid=row.uuid,
        livemode=row.livemode,
        account=row.account or "",
        stripe_id=row.stripe_id,
        enabled=row.status == "enabled",
        tolerance=row.tolerance,
        secrets=secrets,
        payload=row.payload,
        paused=row.paused,
        phase=(row.migration or {}).get("phase"),
    )


def endpoint_by_id(session: Session, endpoint_id: int) -> EndpointInfo | None:
    """The endpoint with this row id, read now (no cache), without its secrets: a stored
    event runs again with no signature to verify, even when they cannot be decrypted."""
    row = session.execute(_select_by_id, {"id": endpoint_id}).first()
    return None if row is None else info(row, None)


_generation = 0  # bumped by every endpoint write seen in this process, and by its commit
_WRITTEN = "stripe_hooks_endpoint_written"  # session.info: this transaction wrote one


def _bump() -> None:
    global _generation
    _generation += 1


def _written(session: Any) -> None:
    """An endpoint write: empty the caches now, and again when its transaction ends (a
    delivery reading the row in between still sees the old one, and would keep it)."""
    _bump()
    if session is not None:
        session.info[_WRITTEN] = True


def _on_flush(mapper: Any, connection: Any, target: Any) -> None:
    _written(sa.orm.object_session(target))


for _name in ("after_insert", "after_update", "after_delete"):
    sa.event.listen(WebhookEndpoint, _name, _on_flush)


def _on_execute(context: Any) -> None:
    if context.is_update or context.is_delete:
        table = getattr(context.statement, "table", None)
        if getattr(table, "name", None) == endpoint_table.name:
            _written(context.session)


def _on_end(session: Any, *args: Any) -> None:
    if session.info.pop(_WRITTEN, False):
        _bump()


# Every session of the process, whichever app or Flask-SQLAlchemy instance made it: registered
# once, on SQLAlchemy's Session class. (Registering on each app's session factory was checked
# with ``sa.event.contains``, which a new factory could answer wrongly when it took the memory,
# and so the id, of a collected one: a process making many apps, a test suite, kept stale
# endpoints for some of them.)
for _name, _listener in (
    ("do_orm_execute", _on_execute),
    ("after_commit", _on_end),
    ("after_rollback", _on_end),
):
    sa.event.listen(sa.orm.Session, _name, _listener)


def endpoint_by_uuid(
    state: State, session: Session, endpoint_uuid: uuid.UUID, *, fresh: bool = False
) -> tuple[EndpointInfo | None, bool]:
    """The endpoint and whether it came from the cache (``fresh``: read the row now)."""
    ttl = state.endpoint_cache
    cache = state.endpoints
    if ttl > 0 and not fresh:
        hit = cache.get(endpoint_uuid)
        if hit is not None and hit[2] == _generation and time.monotonic() < hit[1]:
            return hit[0], True
    generation = _generation  # read before the row: a write meanwhile voids this entry
    row = session.execute(_select_by_uuid, {"uuid": endpoint_uuid}).first()
    if row is None:
        cache.pop(endpoint_uuid, None)
        return None, False
    found = info(row, state)
    if ttl > 0 and found.enabled:
        life = ttl
        left = seconds_to_expiry(row.secrets, datetime.now(timezone.utc))
        if left is not None:
            life = min(life, left)
        cache[endpoint_uuid] = (found, time.monotonic() + life, generation)
    else:
        cache.pop(endpoint_uuid, None)
    return found, False
