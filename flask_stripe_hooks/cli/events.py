"""Commands for events: ``events``, ``event-types``, ``handlers``, ``send-test-event``,
``reprocess``, ``process-pending``, ``pause``, ``resume`` and ``prune``.
:mod:`flask_stripe_hooks.recovery` and :mod:`flask_stripe_hooks.retention` do the work."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import click
from flask import current_app

from .. import endpoints as endpoint_ops
from .. import event_types, recovery, retention
from ..crypto import unseal
from ..models import active_secrets
from ..outcomes import EVENT_STATUSES, RETRYING, TWIN
from ..state import get_state
from ..utils import mode_name, utcnow
from . import cli
from ._support import (
    DRY_RUN,
    DURATION,
    AccountId,
    check_type,
    find_endpoint,
    progress,
    refused,
    session,
    table,
)


@cli.command("events")
@click.option("--type", "type_prefix", help="Only this type or types below it.")
@click.option("--status", type=click.Choice(EVENT_STATUSES))
@click.option("--account", type=AccountId(path=True), help="Only this connected account's events.")
@click.option(
    "--object", "object_id", help="Only events about this Stripe object (sub_..., cus_...)."
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--before", metavar="CURSOR", help="The next (older) page: the cursor printed.")
def list_events(
    type_prefix: str | None,
    status: str | None,
    account: str | None,
    object_id: str | None,
    limit: int,
    before: str | None,
) -> None:
    """List stored events, newest first, a page at a time (an object's history with
    --object)."""
    check_type(type_prefix)
    with refused():  # a cursor that is not one
        page = recovery.recent_events(
            get_state(),
            type_prefix=type_prefix,
            status=status,
            account=account,
            object_id=(object_id or "").strip() or None,
            limit=limit,
            before=before,
        )
    rows = [
        (
            e.id,
            e.type,
            _status(e),
            str(e.attempts),
            mode_name(e.livemode),
            e.account or "-",
            e.received_at.strftime("%Y-%m-%d %H:%M:%S"),
            (e.last_error or "")[:60],
        )
        for e in page.items
    ]
    if not rows:
        click.echo("No events match.")
        return
    header = ("id", "type", "status", "attempts", "mode", "account", "received", "last error")
    table(header, rows)
    if page.older:
        click.echo(f"{page.total_label} match; older ones: --before {page.older}")


def _status(event: Any) -> str:
    """An event's status; a ``retrying`` one says when it is due, one of two twins names
    the other."""
    if event.status == RETRYING and event.next_attempt_at is not None:
        return f"retrying, due {event.next_attempt_at.strftime('%Y-%m-%d %H:%M:%S')}"
    if event.twin_id and event.status == TWIN:
        return f"twin of {event.twin_id}"
    if event.twin_id:
        return f"{event.status}, twin {event.twin_id}"
    return str(event.status)


@cli.command("event-types")
@click.argument("prefix", required=False)
@click.option("--thin", is_flag=True, help="Thin event types (v2 event destinations).")
def list_event_types(prefix: str | None, thin: bool) -> None:
    """Print the event types Stripe sends (from the installed stripe-python)."""
    everything = event_types.thin_event_types() if thin else event_types.all_event_types()
    names = event_types.matching(prefix, thin=thin) if prefix else everything
    if not names:
        raise click.ClickException(
            event_types.unknown_type_message(prefix or "", thin=thin, prefix=True)
        )
    for name in names:
        click.echo(name)


@cli.command("handlers")
@click.argument("event_type")
def list_handlers(event_type: str) -> None:
    """List the handlers an event of EVENT_TYPE runs, in the order they run."""
    name = event_type.strip()
    if name not in (*event_types.all_event_types(), *event_types.thin_event_types()):
        if event_types.is_known(name):  # a prefix: the handlers depend on the whole type
            example = event_types.matching(name, thin=event_types.is_thin_name(name))[0]
            raise click.ClickException(f"Name a whole event type, such as {example}.")
        raise click.ClickException(event_types.unknown_type_message(name))
    found = get_state().registry.handlers_for(name)
    if not found:
        click.echo(f"No handler runs for {name}: subscribe one with @hooks.on({name!r}).")
        return
    table(
        ("#", "subscribed to", "handler"),
        [
            (str(n), subscribed, handler + (" (latest_only)" if latest else ""))
            for n, (subscribed, handler, latest) in enumerate(found, 1)
        ],
    )


@cli.command("send-test-event")
@click.argument("event_type")
@click.option("--endpoint", "endpoint_id", help="Endpoint uuid (default: the only one).")
@click.option(
    "--data",
    help='JSON merged into data.object, e.g. \'{"email": "a@b.c"}\' (for a thin endpoint:'
    ' into the notification, e.g. \'{"context": "acct_..."}\').',
)
@click.option("--url", help="Post to a running server (its base URL) instead of in-process.")
def send_test_event(
    event_type: str, endpoint_id: str | None, data: str | None, url: str | None
) -> None:
    """Build, sign and deliver a realistic event of EVENT_TYPE to an endpoint."""
    from ..testing import event_for, send_event  # test helpers: loaded only when asked for

    if endpoint_id:
        endpoint = find_endpoint(endpoint_id)
    else:
        with refused():
            endpoint = endpoint_ops.only_enabled_endpoint()
    with refused():
        event = event_for(endpoint, event_type, data)
    secrets = active_secrets(endpoint.secrets, utcnow(), unseal)
    if not secrets:
        raise click.ClickException(f"Endpoint {endpoint.uuid} has no active secret.")
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    endpoint_uuid = endpoint.uuid
    session().rollback()  # hold no transaction while the delivery runs
    try:
        status, text = send_event(app, endpoint_uuid, event, secrets[0], url=url)
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{event['id']} {event_type} → {status} {text.strip()}")
    if status >= 300:
        raise click.exceptions.Exit(1)


ENQUEUE = click.option(
    "--enqueue",
    is_flag=True,
    help="Queue mode: hand the events to the queue (workers run them) instead of running"
    " them in this process.",
)


def _run_events(
    ids: Sequence[str],
    command: str,
    *,
    force: bool,
    enqueue: bool,
    dry_run: bool,
    dead: bool = False,
) -> None:
    """Process (or queue) stored events with a progress bar, then print a summary line."""
    state = get_state()
    if enqueue and state.event_callback is None:  # refused by the dry run as by the real one
        raise click.ClickException(
            "--enqueue needs queue mode: set STRIPE_HOOKS_EVENT_CALLBACK (for Celery,"
            " 'flask_stripe_hooks.celery.enqueue'), or leave --enqueue out to run them here."
        )
    if dry_run:
        rows = recovery.describe(state, ids)
        if rows:
            table(("id", "type", "status", "attempts"), [(*r[:3], str(r[3])) for r in rows])
        click.echo(f"{command}: dry run, would {'queue' if enqueue else 'process'} {len(rows)}")
        return
    if enqueue:
        with progress(ids, "Queueing") as bar:
            summary = recovery.enqueue_events(state, bar)
    else:
        with progress(ids, "Processing") as bar:
            summary = recovery.process_events(state, bar, force=force, dead=dead)
    for event_id, reason in summary.problems[:20]:
        click.echo(f"  {event_id}: {reason}")
    if len(summary.problems) > 20:
        click.echo(f"  ... and {len(summary.problems) - 20} more")
    click.echo(f"{command}: {summary.line()}")
    if summary.failed:
        raise click.ClickException(
            f"{summary.failed} of {summary.total} event(s) not processed;"
            " see 'flask stripe-hooks events --status failed'."
        )


@cli.command("reprocess")
@click.argument("event_ids", nargs=-1)
@click.option(
    "--failed", is_flag=True, help="Every failed or dead event (narrow with --since, --type)."
)
@click.option("--since", type=DURATION, help="With --failed: received within this, e.g. 2d.")
@click.option("--type", "type_prefix", help="With --failed: this type or types below it.")
@ENQUEUE
@DRY_RUN
def reprocess(
    event_ids: tuple[str, ...],
    failed: bool,
    since: timedelta | None,
    type_prefix: str | None,
    enqueue: bool,
    dry_run: bool,
) -> None:
    """Run stored events through their handlers again.

    EVENT_IDS run even if already processed; --failed picks every failed or dead event.
    """
    if (since is not None or type_prefix) and not failed:
        raise click.ClickException("--since and --type go with --failed.")
    if event_ids and failed:
        raise click.ClickException("Give event ids or --failed, not both.")
    if not event_ids and not failed:
        raise click.ClickException("Give event ids, or --failed for every failed or dead event.")
    check_type(type_prefix)
    ids = list(event_ids) or recovery.failed_ids(get_state(), since, type_prefix)
    _run_events(
        ids, "reprocess", force=bool(event_ids), enqueue=enqueue, dry_run=dry_run, dead=failed
    )


@cli.command("pause")
@click.argument("endpoint_ids", nargs=-1)
def pause(endpoint_ids: tuple[str, ...]) -> None:
    """Pause endpoints (all by default): deliveries are verified, stored as pending and
    acknowledged; no handler runs until 'resume'."""
    count = _set_paused(True, endpoint_ids)
    click.echo(f"Paused {count} endpoint(s); events wait as pending for 'stripe-hooks resume'.")


@cli.command("resume")
@click.argument("endpoint_ids", nargs=-1)
def resume(endpoint_ids: tuple[str, ...]) -> None:
    """Resume endpoints (all by default), then run every pending event in the order Stripe
    created them (queued to the workers in queue mode)."""
    state = get_state()
    if state.paused:
        raise click.ClickException("STRIPE_HOOKS_PAUSED is set: unset it and restart instead.")
    click.echo(f"Resumed {_set_paused(False, endpoint_ids)} endpoint(s).")
    ids = recovery.pending_ids(state, timedelta(0))
    queued = state.event_callback is not None
    _run_events(ids, "resume", force=False, enqueue=queued, dry_run=False)


def _set_paused(paused: bool, endpoint_ids: tuple[str, ...]) -> int:
    try:
        return recovery.set_paused(get_state(), paused, endpoint_ids)
    except ValueError as exc:
        raise click.ClickException(f"{exc} See 'flask stripe-hooks list-endpoints'.") from None


@cli.command("process-pending")
@click.option(
    "--older-than",
    type=DURATION,
    default="5m",
    show_default=True,
    help="Only events pending for longer than this (younger ones are likely still queued).",
)
@ENQUEUE
@DRY_RUN
def process_pending(older_than: timedelta, enqueue: bool, dry_run: bool) -> None:
    """The sweeper: process pending events whose queue message was lost."""
    ids = recovery.pending_ids(get_state(), older_than)
    _run_events(ids, "process-pending", force=False, enqueue=enqueue, dry_run=dry_run)


@cli.command("prune")
@click.option("--older-than", type=DURATION, default="30d", show_default=True)
@click.option("--bodies-older-than", type=DURATION, help="Clear delivery bodies sooner: 7d.")
@click.option("--keep-failed", is_flag=True, help="Keep failed events and their deliveries.")
@DRY_RUN
def prune(
    older_than: timedelta, bodies_older_than: timedelta | None, keep_failed: bool, dry_run: bool
) -> None:
    """Delete old deliveries and processed events; pending events are always kept."""
    with refused():
        options = retention.prune_options(older_than, bodies_older_than, keep_failed)
    state = get_state()
    found = retention.prune(state, **options, dry_run=True)
    if not dry_run and any(found.values()):
        with progress(None, "Pruning", length=sum(found.values())) as bar:
            found = retention.prune(state, **options, progress=bar.update)
    click.echo(retention.prune_line(found, options, dry_run))
