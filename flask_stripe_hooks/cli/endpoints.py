"""``flask stripe-hooks`` commands for endpoints: register, list, create, update, delete, sync,
set a secret, listen. Each parses its arguments and calls :mod:`flask_stripe_hooks.endpoints`
(or :mod:`flask_stripe_hooks.stripe_cli`), which does the work."""

from __future__ import annotations

import os
from contextlib import suppress
from datetime import timedelta

import click
import sqlalchemy as sa

from .. import endpoint_sync, stripe_cli
from .. import endpoints as endpoint_ops
from ..errors import StripeAPIError
from ..models import WebhookEndpoint, active_secrets
from ..state import get_state
from ..stripe_api import key_source
from ..utils import utcnow
from . import cli
from ._support import (
    DURATION,
    MODES,
    find_endpoint,
    payload_option,
    refused,
    session,
    table,
)


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
@payload_option("thin: an event destination that sends thin events (v2.core.event).")
def register_endpoint(
    secret: str, mode: str, stripe_id: str | None, account: str, description: str, payload: str
) -> None:
    """Record an endpoint made elsewhere (Dashboard, 'stripe listen') with its secret."""
    with refused():
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
    endpoints = session().execute(sa.select(WebhookEndpoint).order_by(WebhookEndpoint.id))
    now = utcnow()
    rows = [
        (
            str(e.uuid),
            e.mode,
            e.payload,
            status(e),
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
    table(("uuid", "mode", "payload", "status", "stripe id", "account", "secrets", "url"), rows)


def status(endpoint: WebhookEndpoint) -> str:
    """``enabled``, ``disabled``, or ``paused`` (enabled, its events held until 'resume')."""
    return "paused" if endpoint.enabled and endpoint.paused else str(endpoint.status)


def describe(endpoint: WebhookEndpoint) -> None:
    events = endpoint.enabled_events
    click.echo(f"  uuid:      {endpoint.uuid}")
    click.echo(f"  URL:       {endpoint.url or get_state().webhook_path(endpoint.uuid)}")
    click.echo(f"  Stripe id: {endpoint.stripe_id or '-'}")
    click.echo(
        f"  mode:      {endpoint.mode}"
        + (f", account {endpoint.account}" if endpoint.account else "")
    )
    click.echo(f"  status:    {status(endpoint)}")
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
@payload_option("thin: a v2 event destination sending thin events (v1.billing.meter.*, v2.*).")
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
    with refused():
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
    describe(endpoint)


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
    with refused():
        endpoint = endpoint_ops.update_endpoint(
            endpoint, enabled=enabled, events=list(events) or None, description=description
        )
    click.echo(
        f"Updated endpoint {endpoint.uuid}" + (" (and on Stripe)." if endpoint.stripe_id else ".")
    )
    describe(endpoint)


@cli.command("delete-endpoint")
@click.argument("endpoint_id", metavar="UUID")
@click.option("--keep-remote", is_flag=True, help="Delete it here only, not on Stripe.")
def delete_endpoint(endpoint_id: str, keep_remote: bool) -> None:
    """Delete an endpoint on Stripe, then here (its stored events stay)."""
    endpoint = find_endpoint(endpoint_id)
    uuid, stripe_id = endpoint.uuid, endpoint.stripe_id
    with refused():
        endpoint_ops.delete_endpoint(endpoint, keep_remote=keep_remote)
    where = (" (kept on Stripe)" if keep_remote else " and on Stripe") if stripe_id else ""
    click.echo(f"Deleted endpoint {uuid}{where}.")


@cli.command("sync-endpoints")
@click.option("--mode", type=MODES, default="test", show_default=True)
@click.option("--account", default="", help="Name of the account in STRIPE_HOOKS_ACCOUNTS.")
def sync_endpoints(mode: str, account: str) -> None:
    """Read the account's endpoints from Stripe: update known ones, import unknown ones."""
    with refused():
        result = endpoint_sync.sync_endpoints(account=account, livemode=mode == "live")
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
    with refused():
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
    with refused():
        binary = stripe_cli.find()
        enabled = endpoint_ops.expand_events(list(events) or ["*"])
    env = dict(os.environ)
    with suppress(StripeAPIError):  # the configured test key, else the Stripe CLI's login
        env["STRIPE_API_KEY"], _ = key_source(get_state(), account=account, livemode=False)
    with refused():
        secret = stripe_cli.print_secret(binary, env)
        endpoint = endpoint_ops.register_endpoint(
            secret, account=account, enabled_events=enabled, description="stripe listen (temporary)"
        )
    endpoint_uuid = endpoint.uuid
    target = forward_to.rstrip("/") + get_state().webhook_path(endpoint_uuid)
    click.echo(f"Temporary test-mode endpoint {endpoint_uuid}; forwarding to {target}")
    click.echo("Stop with Ctrl-C.")
    try:
        with refused():
            code = stripe_cli.forward(binary, target, enabled, env)
    finally:
        session().rollback()
        with refused():
            endpoint_ops.delete_endpoint(endpoint_ops.get_endpoint(endpoint_uuid), keep_remote=True)
        click.echo(f"Removed the temporary endpoint {endpoint_uuid}.")
    if code not in stripe_cli.STOPPED:
        raise click.exceptions.Exit(code)
