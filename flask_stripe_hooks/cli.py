"""``flask stripe-hooks ...``: manage endpoints, look at events, send test events, recover.

Commands run inside the app context Flask's CLI provides; errors end in a
``click.ClickException`` with a message to act on. No command prints a secret.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import timedelta
from typing import Any

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from . import endpoints as endpoint_ops
from . import event_types, recovery
from .models import EVENT_STATUSES, WebhookEndpoint, active_secrets
from .state import get_state
from .stripe_api import StripeAPIError, key_source, scrub
from .testing import event_for, send_event
from .utils import StripeHooksError, format_duration, mode_name, parse_duration, utcnow

cli = AppGroup("stripe-hooks", help="Stripe webhook endpoints and events.")

MODES = click.Choice(["test", "live"])
PAYLOADS = click.Choice(["snapshot", "thin"])


def _payload_option(help: str) -> Any:
    return click.option(
        "--payload", type=PAYLOADS, default="snapshot", show_default=True, help=help
    )


def _session():  # type: ignore[no-untyped-def]
    return get_state().db.session


def find_endpoint(value: str) -> WebhookEndpoint:
    """An endpoint by uuid (or Stripe id ``we_...``/``ed_...``), or a ClickException."""
    try:
        return endpoint_ops.get_endpoint(value)
    except endpoint_ops.EndpointError as exc:
        raise click.ClickException(
            f"{exc.message} See 'flask stripe-hooks list-endpoints'."
        ) from None


@cli.command("register-endpoint")
@click.option(
    "--secret",
    prompt="Signing secret (whsec_...)",
    hide_input=True,
    help="The endpoint's signing secret; prompted for (hidden) when left out.",
)
@click.option("--mode", type=MODES, default="test", show_default=True)
@click.option(
    "--stripe-id", help="The endpoint's id on Stripe (we_..., or ed_... if thin), if it has one."
)
@click.option("--account", default="", help="Name of the account in STRIPE_HOOKS_ACCOUNTS.")
@click.option("--description", default="", help="A note about the endpoint, shown in the admin.")
@_payload_option("thin: an event destination that sends thin events (v2.core.event).")
def register_endpoint(
    secret: str, mode: str, stripe_id: str | None, account: str, description: str, payload: str
) -> None:
    """Record an endpoint made elsewhere (Dashboard, 'stripe listen') with its secret."""
    with _refused():
        endpoint = endpoint_ops.register_endpoint(
            secret,
            livemode=mode == "live",
            stripe_id=stripe_id,
            account=account,
            description=description,
            payload=payload,
        )
    click.echo(
        f"Registered {mode}-mode endpoint {endpoint.uuid}"
        + (" for thin events" if payload == "thin" else "")
    )
    click.echo(f"URL path: {get_state().webhook_path(endpoint.uuid)}")


@cli.command("list-endpoints")
def list_endpoints() -> None:
    """List the endpoints (never their secrets)."""
    endpoints = _session().execute(sa.select(WebhookEndpoint).order_by(WebhookEndpoint.id))
    now = utcnow()
    rows = [
        (
            str(e.uuid),
            e.mode,
            e.payload,
            e.status,
            e.stripe_id or "-",
            e.account or "-",
            f"{len(active_secrets(e.secrets, now))} active secret(s)",
            e.url or get_state().webhook_path(e.uuid),
        )
        for e in endpoints.scalars()
    ]
    if not rows:
        click.echo("No endpoints. Add one with 'register-endpoint' or 'create-endpoint'.")
        return
    _table(("uuid", "mode", "payload", "status", "stripe id", "account", "secrets", "url"), rows)


@cli.command("events")
@click.option("--type", "type_prefix", help="Only this type or types below it.")
@click.option("--status", type=click.Choice(EVENT_STATUSES))
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
def list_events(type_prefix: str | None, status: str | None, limit: int) -> None:
    """List stored events, newest first."""
    found = recovery.recent_events(get_state(), type_prefix=type_prefix, status=status, limit=limit)
    rows = [
        (
            e.id,
            e.type,
            e.status,
            str(e.attempts),
            mode_name(e.livemode),
            e.received_at.strftime("%Y-%m-%d %H:%M:%S"),
            (e.last_error or "")[:60],
        )
        for e in found
    ]
    if not rows:
        click.echo("No events match.")
        return
    _table(("id", "type", "status", "attempts", "mode", "received", "last error"), rows)


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
    if endpoint_id:
        endpoint = find_endpoint(endpoint_id)
    else:
        with _refused():
            endpoint = endpoint_ops.only_enabled_endpoint()
    with _refused():
        event = event_for(endpoint, event_type, data)
    secrets = active_secrets(endpoint.secrets, utcnow())
    if not secrets:
        raise click.ClickException(f"Endpoint {endpoint.uuid} has no active secret.")
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    endpoint_uuid = endpoint.uuid
    _session().rollback()  # hold no transaction while the delivery runs
    try:
        status, text = send_event(app, endpoint_uuid, event, secrets[0], url=url)
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{event['id']} {event_type} → {status} {text.strip()}")
    if status >= 300:
        raise click.exceptions.Exit(1)


class Duration(click.ParamType):
    """``30s``, ``5m``, ``2h``, ``3d`` (``0``: now) as a ``timedelta``."""

    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()
DRY_RUN = click.option("--dry-run", is_flag=True, help="Show what would be done; change nothing.")
ENQUEUE = click.option(
    "--enqueue",
    is_flag=True,
    help="Queue mode: hand the events to the queue (workers run them) instead of running"
    " them in this process.",
)


def _progress(items: Sequence[Any] | None, label: str, length: int | None = None) -> Any:
    return click.progressbar(items, length, label=label, file=sys.stderr, show_pos=True)


def _run_events(
    ids: Sequence[str], command: str, *, force: bool, enqueue: bool, dry_run: bool
) -> None:
    """Process (or queue) stored events with a progress bar, then print a summary line."""
    state = get_state()
    if dry_run:
        rows = recovery.describe(state, ids)
        if rows:
            _table(("id", "type", "status", "attempts"), [(*r[:3], str(r[3])) for r in rows])
        click.echo(f"{command}: dry run, would {'queue' if enqueue else 'process'} {len(rows)}")
        return
    if enqueue and state.event_callback is None:
        raise click.ClickException(
            "--enqueue needs queue mode: set STRIPE_HOOKS_EVENT_CALLBACK (for Celery,"
            " 'flask_stripe_hooks.celery.enqueue'), or leave --enqueue out to run them here."
        )
    if enqueue:
        with _progress(ids, "Queueing") as bar:
            summary = recovery.enqueue_events(state, bar)
    else:
        with _progress(ids, "Processing") as bar:
            summary = recovery.process_events(state, bar, force=force)
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


def _check_type(type_prefix: str | None) -> None:
    if type_prefix and not event_types.is_known(event_types.normalize_prefix(type_prefix) or "*"):
        message = event_types.unknown_type_message(type_prefix, prefix=True)
        raise click.ClickException(f"--type {message}")


@cli.command("reprocess")
@click.argument("event_ids", nargs=-1)
@click.option("--failed", is_flag=True, help="Every failed event (narrow with --since, --type).")
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

    EVENT_IDS run even if already processed; --failed picks every failed event.
    """
    if bool(event_ids) == failed:
        raise click.ClickException("Give event ids, or --failed (not both).")
    if (since is not None or type_prefix) and not failed:
        raise click.ClickException("--since and --type go with --failed.")
    _check_type(type_prefix)
    ids = list(event_ids) or recovery.failed_ids(get_state(), since, type_prefix)
    _run_events(ids, "reprocess", force=bool(event_ids), enqueue=enqueue, dry_run=dry_run)


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
@click.option("--keep-failed", is_flag=True, help="Keep failed events and their deliveries.")
@DRY_RUN
def prune(older_than: timedelta, keep_failed: bool, dry_run: bool) -> None:
    """Delete old deliveries and processed events; pending events are always kept."""
    if older_than < recovery.STRIPE_RETRIES_FOR:
        raise click.ClickException(
            "Stripe retries a delivery for up to 3 days; pruning events younger than that"
            " lets a late retry run its handlers again. Use --older-than 3d or more."
        )
    state = get_state()
    found = recovery.prune(state, older_than=older_than, keep_failed=keep_failed, dry_run=True)
    if not dry_run and any(found.values()):
        with _progress(None, "Deleting", length=sum(found.values())) as bar:
            found = recovery.prune(
                state, older_than=older_than, keep_failed=keep_failed, progress=bar.update
            )
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"prune: {verb} {found['deliveries']} delivery(ies) and {found['events']} event(s)"
        f" received more than {format_duration(older_than)} ago"
    )


# -- endpoints on Stripe (endpoints.py does the work) -----------------------------------


@contextmanager
def _refused() -> Iterator[None]:
    """EndpointError / StripeAPIError (a StripeHooksError) → a ClickException."""
    try:
        yield
    except StripeHooksError as exc:
        raise click.ClickException(exc.message) from None


def _describe(endpoint: WebhookEndpoint) -> None:
    events = endpoint.enabled_events
    click.echo(f"  uuid:      {endpoint.uuid}")
    click.echo(f"  URL:       {endpoint.url or get_state().webhook_path(endpoint.uuid)}")
    click.echo(f"  Stripe id: {endpoint.stripe_id or '-'}")
    click.echo(
        f"  mode:      {endpoint.mode}"
        + (f", account {endpoint.account}" if endpoint.account else "")
    )
    click.echo(f"  status:    {endpoint.status}")
    click.echo(f"  payload:   {endpoint.payload}")
    click.echo(f"  events:    {', '.join(events) if len(events) <= 5 else f'{len(events)} types'}")


def _metadata(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.ClickException(f"--metadata takes KEY=VALUE, not {item!r}.")
        out[key.strip()] = value
    return out


EVENTS_HELP = (
    "Event type, or a pattern such as customer.subscription.* (expanded to the real types);"
    " repeat it or separate names by commas."
)


@cli.command("create-endpoint")
@click.option("--base-url", required=True, help="The app's public URL, e.g. https://example.com.")
@click.option("--events", multiple=True, help=EVENTS_HELP + " Default: *.")
@click.option("--mode", type=MODES, default="test", show_default=True)
@click.option("--account", default="", help="Name of the account in STRIPE_HOOKS_ACCOUNTS.")
@click.option("--api-version", help="API version of the events (default: STRIPE_API_VERSION).")
@click.option(
    "--description", default="", help="A note about the endpoint, on Stripe and in the admin."
)
@click.option("--metadata", multiple=True, help="KEY=VALUE, repeatable.")
@click.option("--connect", is_flag=True, help="Receive events from connected accounts.")
@_payload_option("thin: a v2 event destination sending thin events (v1.billing.meter.*, v2.*).")
def create_endpoint(
    base_url: str,
    events: tuple[str, ...],
    mode: str,
    account: str,
    api_version: str | None,
    description: str,
    metadata: tuple[str, ...],
    connect: bool,
    payload: str,
) -> None:
    """Create an endpoint on Stripe and store its signing secret (never printed)."""
    with _refused():
        endpoint = endpoint_ops.create_endpoint(
            payload=payload,
            base_url=base_url,
            events=list(events) or None,
            livemode=mode == "live",
            account=account,
            api_version=api_version,
            description=description,
            metadata=_metadata(metadata),
            connect=connect,
        )
    click.echo(f"Created {endpoint.mode}-mode endpoint {endpoint.uuid}; its secret is stored.")
    _describe(endpoint)


@cli.command("update-endpoint")
@click.argument("endpoint_id", metavar="UUID")
@click.option("--enable/--disable", "enabled", default=None, help="Receive events or not.")
@click.option("--events", multiple=True, help=EVENTS_HELP)
@click.option("--description", help="A new note about the endpoint (synced to Stripe).")
def update_endpoint(
    endpoint_id: str, enabled: bool | None, events: tuple[str, ...], description: str | None
) -> None:
    """Change an endpoint, on Stripe too when it has a Stripe id."""
    if enabled is None and not events and description is None:
        raise click.ClickException(
            "Nothing to change: give --enable, --disable, --events or --description."
        )
    endpoint = find_endpoint(endpoint_id)
    with _refused():
        endpoint = endpoint_ops.update_endpoint(
            endpoint, enabled=enabled, events=list(events) or None, description=description
        )
    click.echo(
        f"Updated endpoint {endpoint.uuid}" + (" (and on Stripe)." if endpoint.stripe_id else ".")
    )
    _describe(endpoint)


@cli.command("delete-endpoint")
@click.argument("endpoint_id", metavar="UUID")
@click.option("--keep-remote", is_flag=True, help="Delete it here only, not on Stripe.")
def delete_endpoint(endpoint_id: str, keep_remote: bool) -> None:
    """Delete an endpoint on Stripe, then here (its stored events stay)."""
    endpoint = find_endpoint(endpoint_id)
    uuid, stripe_id = endpoint.uuid, endpoint.stripe_id
    with _refused():
        endpoint_ops.delete_endpoint(endpoint, keep_remote=keep_remote)
    where = (" (kept on Stripe)" if keep_remote else " and on Stripe") if stripe_id else ""
    click.echo(f"Deleted endpoint {uuid}{where}.")


@cli.command("sync-endpoints")
@click.option("--mode", type=MODES, default="test", show_default=True)
@click.option("--account", default="", help="Name of the account in STRIPE_HOOKS_ACCOUNTS.")
def sync_endpoints(mode: str, account: str) -> None:
    """Read the account's endpoints from Stripe: update known ones, import unknown ones."""
    with _refused():
        result = endpoint_ops.sync_endpoints(account=account, livemode=mode == "live")
    click.echo(result.line())
    for message in result.messages:
        click.echo(message)


@cli.command("set-secret")
@click.argument("endpoint_id", metavar="UUID")
@click.argument("secret", required=False)
@click.option(
    "--keep-old-for",
    type=DURATION,
    default="0",
    show_default=True,
    help="How long the previous secret stays valid: 30m, 24h, 3d (0: not at all).",
)
def set_secret(endpoint_id: str, secret: str | None, keep_old_for: timedelta) -> None:
    """Set an endpoint's signing secret (rotation); prompted for, hidden, when left out."""
    endpoint = find_endpoint(endpoint_id)
    if secret is None:
        secret = click.prompt("Signing secret (whsec_...)", hide_input=True)
    with _refused():
        endpoint_ops.set_secret(endpoint, secret, keep_old_for=keep_old_for)
    kept = "previous secrets are no longer accepted"
    if keep_old_for:
        until = (utcnow() + keep_old_for).strftime("%Y-%m-%d %H:%M UTC")
        kept = f"the previous one is accepted until {until}"
    click.echo(f"New secret stored for {endpoint.uuid}; {kept}.")


@cli.command("listen")
@click.option("--events", multiple=True, help=EVENTS_HELP + " Default: *.")
@click.option(
    "--forward-to",
    default="http://127.0.0.1:5000",
    show_default=True,
    help="Base URL of the running app ('flask run').",
)
@click.option("--account", default="", help="Name of the account in STRIPE_HOOKS_ACCOUNTS.")
def listen(events: tuple[str, ...], forward_to: str, account: str) -> None:
    """Local development: forward test-mode events with the Stripe CLI ('stripe listen').

    Records a temporary endpoint with the secret 'stripe listen --print-secret' gives,
    forwards to it until you stop (Ctrl-C), then removes it.
    """
    binary = shutil.which("stripe")
    if binary is None:
        raise click.ClickException(
            "The Stripe CLI ('stripe') is not on PATH. Install it (https://docs.stripe.com/"
            "stripe-cli, or 'npm install -g @stripe/cli'), run 'stripe login', then try again."
        )
    with _refused():
        enabled = endpoint_ops.expand_events(list(events) or ["*"])
    env = dict(os.environ)
    with suppress(StripeAPIError):  # the configured test key, else the Stripe CLI's login
        env["STRIPE_API_KEY"], _ = key_source(get_state(), account=account, livemode=False)
    try:
        printed = subprocess.run(
            [binary, "listen", "--print-secret"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise click.ClickException(f"'stripe listen --print-secret' failed: {exc}") from None
    secret = printed.stdout.strip().splitlines()[-1].strip() if printed.stdout.strip() else ""
    if printed.returncode != 0 or not secret.startswith("whsec_"):
        detail = scrub((printed.stderr or printed.stdout).strip())[-500:]
        raise click.ClickException(
            "'stripe listen --print-secret' gave no signing secret"
            + (f": {detail}" if detail else "; run 'stripe login' first.")
        )
    session = _session()
    with _refused():
        endpoint = endpoint_ops.register_endpoint(
            secret, account=account, enabled_events=enabled, description="stripe listen (temporary)"
        )
    endpoint_uuid = endpoint.uuid
    target = forward_to.rstrip("/") + get_state().webhook_path(endpoint_uuid)
    command = [binary, "listen", "--forward-to", target]
    if enabled != ["*"]:
        command += ["--events", ",".join(enabled)]
    click.echo(f"Temporary test-mode endpoint {endpoint_uuid}; forwarding to {target}")
    click.echo("Stop with Ctrl-C.")
    process = None
    try:
        process = subprocess.Popen(command, env=env)
        process.wait()
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise click.ClickException(f"Could not run 'stripe listen': {exc}") from None
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        session.rollback()
        with _refused():
            endpoint_ops.delete_endpoint(endpoint_ops.get_endpoint(endpoint_uuid), keep_remote=True)
        click.echo(f"Removed the temporary endpoint {endpoint_uuid}.")
    stopped = (0, None, 130, -signal.SIGINT, -signal.SIGTERM)  # ended, or by Ctrl-C
    if process is not None and process.returncode not in stopped:
        raise click.exceptions.Exit(process.returncode)


def _table(header: tuple[str, ...], rows: Sequence[tuple[Any, ...]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
