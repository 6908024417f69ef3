"""Endpoint health and drift: the checks behind ``flask stripe-hooks doctor`` and the
admin's Health page.

Each check is a plain function that returns a list of :class:`Finding`. Against Stripe (with
the endpoint's account and mode): the endpoint still exists, is enabled, points at this
app's URL, is pinned to the API version stripe-python speaks, sends every type a handler
listens to and nothing no handler wants. Here: where a move to thin events stands (and what
stands in the way of its next step), signing secrets that the configured
``STRIPE_HOOKS_ENCRYPTION_KEY`` cannot decrypt or that are about to expire, deliveries that
failed since the last successful processing, failed, retrying, dead and stuck pending
events. Every query is bounded (a 24-hour window, or the few rows in a
problem status), so the checks can run from cron.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import current_app

from . import crypto, event_types, paging, signals, stripe_api, thin_migration
from .errors import StripeHooksError, UnreadableSecret
from .models import WebhookEndpoint, delivery_table, event_table
from .outcomes import DEAD, DUPLICATE, FAILED, PENDING, PROCESSED, QUEUED, RETRYING
from .pipeline import SHADOW_PHASE
from .utils import aware, fmt_time, utcnow

if TYPE_CHECKING:
    from .state import State

ERROR, WARNING, NOTE = "error", "warning", "note"
#: A secret that expires sooner than this with no newer one to follow is reported.
SECRET_WARNING = timedelta(days=7)
#: The window of the delivery and failure checks.
WINDOW = timedelta(hours=24)
#: In queue mode, a pending event older than this means the workers are behind or down.
PENDING_AGE = timedelta(minutes=15)
#: Event statuses worth a look (``retrying`` and ``dead`` exist where retries are enabled).
PROBLEM_STATUSES = (PENDING, FAILED, RETRYING, DEAD)


@dataclass(frozen=True)
class Finding:
    """One thing found: ``endpoint`` is the endpoint's uuid (``""`` for the whole app),
    ``severity`` ``error``, ``warning`` or ``note`` (a check that could not run, or
    information: notes do not make the run fail), ``code`` a stable name, ``message``
    what is wrong and ``fix`` how to fix it."""

    endpoint: str
    severity: str
    code: str
    message: str
    fix: str = ""
    #: What ``doctor --fix`` can do about it: ``("events", [names])`` or ``("enable", [])``.
    action: tuple[str, tuple[str, ...]] | None = field(default=None, compare=False)

    @property
    def problem(self) -> bool:
        return self.severity != NOTE

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["action"] = out["action"][0] if self.action else None
        return out


def check_all(state: State, *, notify: bool = False) -> list[Finding]:
    """Every check, for every endpoint and for the app. With ``notify`` (``doctor`` does),
    send :data:`~flask_stripe_hooks.signals.endpoint_unhealthy` for each endpoint with
    problems."""
    session = state.db.session
    endpoints = list(session.scalars(sa.select(WebhookEndpoint).order_by(WebhookEndpoint.id)))
    findings: list[Finding] = []
    for endpoint in endpoints:
        mine = check_endpoint(state, endpoint)
        findings += mine
        problems = [f for f in mine if f.problem]
        if notify and problems and signals.endpoint_unhealthy.receivers:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            signals.endpoint_unhealthy.send(app, endpoint=endpoint, findings=problems)
    findings += check_events(state)
    session.rollback()
    return findings


def check_endpoint(state: State, endpoint: WebhookEndpoint) -> list[Finding]:
    """The checks of one endpoint: against Stripe, its secrets, its recent deliveries."""
    unreadable = check_key(state, endpoint)
    if not endpoint.enabled:
        return [
            *unreadable,
            Finding(
                str(endpoint.uuid),
                NOTE,
                "disabled",
                "Disabled here: deliveries to it are refused.",
                f"flask stripe-hooks update-endpoint {endpoint.uuid} --enable",
            ),
        ]
    now = utcnow()
    return [
        *unreadable,
        *check_remote(state, endpoint),
        *check_secrets(endpoint, now),
        *check_deliveries(state, endpoint, now),
        *check_migration(state, endpoint),
    ]


def check_migration(state: State, endpoint: WebhookEndpoint) -> list[Finding]:
    """A thin endpoint made by ``migrate-to-thin``: the phase and what is left (a note), and
    what stands in the way of the next step."""
    if not endpoint.thin or not endpoint.migration:
        return []
    uuid = str(endpoint.uuid)
    report = thin_migration.report(state, endpoint)
    *said, _ = report.lines()
    found = [Finding(uuid, NOTE, "migration", " ".join(said), report.next_step)]
    if report.phase == SHADOW_PHASE and report.shadow_failed:
        found.append(
            Finding(
                uuid,
                WARNING,
                "shadow-failures",
                f"{report.shadow_failed} thin event(s) failed in their handlers during the"
                " shadow phase; cutover waits until they pass.",
                "See 'flask stripe-hooks events --status shadow' (last error), fix the thin"
                " handlers; the next thin events show whether they pass.",
            )
        )
    if report.phase == SHADOW_PHASE:
        missing = thin_migration.uncovered(state, list(endpoint.enabled_events))
        if missing:
            listed = ", ".join(f"{s} → {t}" for s, t in missing[:5])
            found.append(
                Finding(
                    uuid,
                    WARNING,
                    "thin-handler-missing",
                    f"Handlers listen to snapshot types whose thin twin no handler listens to"
                    f" ({listed}); cutover is refused until one does.",
                    "Add @hooks.on('v1....') handlers (docs: thin-events, the worked example).",
                )
            )
    return found


# -- against Stripe --------------------------------------------------------------------------


def retrieve(state: State, endpoint: WebhookEndpoint) -> dict[str, Any] | None:
    """The endpoint as Stripe has it, v1-shaped; None when Stripe has no such endpoint."""
    assert endpoint.stripe_id
    return stripe_api.retrieve_endpoint(
        state,
        endpoint.stripe_id,
        thin=endpoint.thin,
        account=endpoint.account,
        livemode=endpoint.livemode,
    )


def expected_api_version(state: State) -> str:
    """The API version payloads should have: ``STRIPE_API_VERSION``, else stripe-python's."""
    return stripe_api.api_version(state)


def check_remote(state: State, endpoint: WebhookEndpoint) -> list[Finding]:
    uuid = str(endpoint.uuid)
    if not endpoint.stripe_id:
        return [Finding(uuid, NOTE, "not-on-stripe", "No Stripe id: Stripe's side not checked.")]
    try:
        stripe_api.key_source(state, account=endpoint.account, livemode=endpoint.livemode)
    except StripeHooksError as exc:  # no key for its account and mode: nothing to ask with
        return [Finding(uuid, NOTE, "stripe-skipped", f"Stripe's side not checked: {exc}")]
    try:
        remote = retrieve(state, endpoint)
    except StripeHooksError as exc:
        return [
            Finding(
                uuid,
                WARNING,
                "stripe-error",
                f"Stripe's side could not be checked: {exc}",
                "Check the API key and the network, then run doctor again.",
            )
        ]
    if remote is None:
        return [
            Finding(
                uuid,
                ERROR,
                "deleted-on-stripe",
                f"Stripe has no endpoint {endpoint.stripe_id} any more: nothing is sent here.",
                "Create a new one with 'flask stripe-hooks create-endpoint', then"
                f" 'flask stripe-hooks delete-endpoint {uuid} --keep-remote'.",
            )
        ]
    found = []
    if remote.get("status") != "enabled":
        found.append(
            Finding(
                uuid,
                ERROR,
                "disabled-on-stripe",
                f"Disabled on Stripe ({remote.get('status')}): Stripe disables an endpoint"
                " that failed for days, and sends nothing to it.",
                "Fix what made deliveries fail, then 'flask stripe-hooks doctor --fix"
                f" --reenable' (or 'update-endpoint {uuid} --enable').",
                ("enable", ()),
            )
        )
    path = state.webhook_path(uuid)
    url = remote.get("url")
    if url is not None and not url.rstrip("/").endswith(path.rstrip("/")):
        found.append(
            Finding(
                uuid,
                ERROR,
                "wrong-url",
                f"Stripe posts to {url}, which is not this endpoint's path {path}.",
                "Point it back in the Dashboard, or create a new endpoint with"
                " 'flask stripe-hooks create-endpoint'.",
            )
        )
    expected = expected_api_version(state)
    version = remote.get("api_version")
    if not endpoint.thin and version != expected:
        shown = version or "the account's default"
        found.append(
            Finding(
                uuid,
                WARNING,
                "api-version",
                f"Payloads come in API version {shown}; stripe-python here speaks {expected}.",
                f"flask stripe-hooks upgrade-endpoint {uuid} --api-version {expected}"
                " (see docs/operations.md: a new endpoint, both running, then the old one off)",
            )
        )
    found += check_types(state, endpoint, list(remote.get("enabled_events") or []))
    if endpoint.thin and bool(remote.get("connect")) != endpoint.connect:
        want = "connected accounts'" if endpoint.connect else "its own account's"
        found.append(
            Finding(
                uuid,
                WARNING,
                "connect",
                f"Recorded here for {want} events, but Stripe's destination says otherwise.",
                "Recreate the endpoint with or without --connect to match.",
            )
        )
    return found


def subscribed(state: State, *, thin: bool) -> list[str]:
    """Names some handler listens to (``*`` and prefixes included), of one payload style."""
    names = [name for name, sig in state.registry._signals.items() if sig.receivers]
    return [n for n in names if n == "*" or event_types.is_thin_name(n) == thin]


def check_types(state: State, endpoint: WebhookEndpoint, enabled: list[str]) -> list[Finding]:
    """Handlers an endpoint never triggers, and types it sends that no handler wants."""
    uuid = str(endpoint.uuid)
    names = subscribed(state, thin=endpoint.thin)
    every = "*" in enabled
    found = []
    uncovered = [
        n
        for n in names
        if not every and not any(n == "*" or event_types.in_prefix(t, n) for t in enabled)
    ]
    if uncovered:
        listed = ", ".join(uncovered)
        found.append(
            Finding(
                uuid,
                ERROR,
                "handler-not-covered",
                f"Handlers listen to {listed}, which this endpoint does not send: they never run.",
                f"flask stripe-hooks doctor --fix (enables {listed} on the endpoint)",
                ("events", tuple(uncovered)),
            )
        )
    if names and "*" not in names:
        unused = [t for t in enabled if not any(event_types.in_prefix(t, n) for n in names)]
        if unused:
            message = (
                f"Stripe sends every event type; handlers listen only to {', '.join(names)}:"
                " the rest is stored, never used."
                if every
                else f"Stripe sends {', '.join(unused)} and no handler listens: stored, never used."
            )
            found.append(
                Finding(
                    uuid,
                    WARNING,
                    "unused-types",
                    message,
                    f"flask stripe-hooks update-endpoint {uuid} --events {' '.join(names)}",
                )
            )
    return found


# -- here ------------------------------------------------------------------------------------


def check_key(state: State, endpoint: WebhookEndpoint) -> list[Finding]:
    """A stored signing secret (expired ones too) that ``STRIPE_HOOKS_ENCRYPTION_KEY``
    cannot decrypt: deliveries are answered 503 until it is fixed."""
    try:
        crypto.opened(endpoint.secrets, state)
    except UnreadableSecret:
        uuid = str(endpoint.uuid)
        return [
            Finding(
                uuid,
                ERROR,
                "unreadable-secret",
                f"{crypto.unreadable_reason(state)} Every delivery to this endpoint is"
                " answered 503 (signing secret could not be decrypted).",
                f"Set {crypto.KEY} to the key that encrypted it (a list keeps the old key:"
                " [new, old]) and check with 'flask stripe-hooks check-encryption'; or store"
                f" the secret again: flask stripe-hooks set-secret {uuid} whsec_...",
            )
        ]
    return []


def check_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[Finding]:
    """No valid secret, or every valid secret expiring within :data:`SECRET_WARNING`."""
    uuid = str(endpoint.uuid)
    ends = []
    for item in endpoint.secrets or ():
        expires = item.get("expires_at")
        end = datetime.fromisoformat(expires) if expires else None
        if end is None or end > now:
            ends.append(end)
    fix = f"flask stripe-hooks set-secret {uuid} whsec_... (the secret Stripe shows)"
    if not ends:
        return [
            Finding(
                uuid, ERROR, "no-secret", "No valid signing secret: every delivery is refused.", fix
            )
        ]
    if None in ends:
        return []
    last = max(e for e in ends if e is not None)
    if last - now > SECRET_WARNING:
        return []
    left = _human(last - now)
    return [
        Finding(
            uuid, WARNING, "secret-expiring", f"The last signing secret expires in {left}.", fix
        )
    ]


def last_success(state: State, endpoint: WebhookEndpoint, since: datetime) -> datetime | None:
    """When the endpoint last processed an event successfully, after ``since``: its last
    successful delivery, or a later re-run of an event whose delivery failed after it (at
    most the newest 1,000 of those failures: on a healthy endpoint, none)."""
    d, e, session = delivery_table, event_table, state.db.session
    mine = (d.c.endpoint_id == endpoint.id, d.c.received_at >= since)
    delivered = session.execute(
        sa.select(sa.func.max(d.c.received_at)).where(
            *mine, d.c.outcome.in_((PROCESSED, DUPLICATE, QUEUED))
        )
    ).scalar()
    failed = sa.select(d.c.event_id).where(*mine, d.c.outcome == FAILED)
    if delivered is not None:
        failed = failed.where(d.c.received_at > delivered)
    failed = paging.newest(failed, d.c.received_at, d.c.id)
    rerun = session.execute(
        sa.select(sa.func.max(e.c.processed_at)).where(e.c.id.in_(failed), e.c.status == PROCESSED)
    ).scalar()
    found = [aware(when) for when in (delivered, rerun) if when is not None]
    return max(found) if found else None


def check_deliveries(state: State, endpoint: WebhookEndpoint, now: datetime) -> list[Finding]:
    """Deliveries that failed since the endpoint last processed an event successfully (a
    delivery, or a re-run of a failed one), within the last 24 hours: once the failed
    events are re-run successfully, the finding is gone. It reads at most the newest 1,000
    (:func:`~.paging.newest`): it costs the same whatever the traffic."""
    uuid = str(endpoint.uuid)
    last = last_success(state, endpoint, now - WINDOW)
    # One bound on received_at: with two, SQLite reads the index from the window's start.
    after = [
        delivery_table.c.endpoint_id == endpoint.id,
        delivery_table.c.received_at >= now - WINDOW
        if last is None
        else delivery_table.c.received_at > last,
    ]
    query = sa.select(delivery_table.c.outcome).where(*after)
    recent = paging.newest(query, delivery_table.c.received_at, delivery_table.c.id).subquery()
    total, failed = state.db.session.execute(
        sa.select(sa.func.count(), sa.func.count().filter(recent.c.outcome == FAILED))
    ).one()
    if not failed:
        return []
    rate = failed / total
    counted = (
        f"{failed:,} of the last {total:,}" if total >= paging.COUNT_CAP else f"{failed} of {total}"
    )
    message = (
        f"{counted} deliveries failed in the last 24 hours ({rate:.0%}); none succeeded."
        if last is None
        else f"{counted} deliveries since the last successful processing"
        f" ({fmt_time(last)}) failed ({rate:.0%})."
    )
    return [
        Finding(
            uuid,
            ERROR if last is None else WARNING,
            "failing-deliveries",
            message,
            "See the tracebacks: 'flask stripe-hooks events --status failed' or the admin,"
            " fix the handler, then 'flask stripe-hooks reprocess --failed'.",
        )
    ]


def check_events(state: State) -> list[Finding]:
    """Failed, retrying, dead and (in queue mode) stuck pending events."""
    session = state.db.session
    counts = {  # each up to the cap: a range of the (status, received_at, id) index
        status: paging.capped_count(
            session,
            sa.select(event_table.c.id).where(event_table.c.status == status),
            event_table.c.id,
        )
        for status in PROBLEM_STATUSES
    }
    found = []
    if counts.get(FAILED):
        found.append(
            Finding(
                "",
                WARNING,
                "failed-events",
                f"{paging.count_label(counts[FAILED])} event(s) failed in their handlers.",
                "flask stripe-hooks reprocess --failed (once the handler is fixed)",
            )
        )
    if counts.get(DEAD):
        found.append(
            Finding(
                "",
                ERROR,
                "dead-events",
                f"{paging.count_label(counts[DEAD])} event(s) gave up retrying (dead).",
                "Fix the handler, then 'flask stripe-hooks reprocess' them.",
            )
        )
    if counts.get(RETRYING):
        found.append(
            Finding(
                "",
                NOTE,
                "retrying-events",
                f"{paging.count_label(counts[RETRYING])} event(s) retrying.",
            )
        )
    if counts.get(PENDING) and state.event_callback is not None:
        oldest = session.execute(
            sa.select(sa.func.min(event_table.c.received_at)).where(event_table.c.status == PENDING)
        ).scalar()
        age = utcnow() - aware(oldest) if oldest is not None else timedelta(0)
        if age > PENDING_AGE:
            found.append(
                Finding(
                    "",
                    WARNING,
                    "pending-stuck",
                    f"{paging.count_label(counts[PENDING])} event(s) pending; the oldest for"
                    f" {_human(age)}.",
                    "Check that the queue workers run; 'flask stripe-hooks process-pending'"
                    " sweeps what their messages lost.",
                )
            )
    return found


def problems(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.problem]


def _human(delta: timedelta) -> str:
    """``3 days``, ``5 hours``, ``12 minutes``: the largest whole unit, rounded down."""
    seconds = int(delta.total_seconds())
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n > 1 else ''}"
    return f"{max(seconds, 0)} seconds"
