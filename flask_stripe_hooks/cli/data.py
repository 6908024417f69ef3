"""``flask stripe-hooks`` commands for what the extension trusts and keeps: refresh Stripe's
list of webhook addresses (``update-ips``), erase one customer's events (``erase``), give
older events their object id (``fill-object-ids``). Each parses its arguments and calls
:mod:`flask_stripe_hooks.ips` or :mod:`flask_stripe_hooks.retention`, which do the work."""

from __future__ import annotations

import sys

import click
from flask import current_app

from .. import ips, retention
from ..state import get_state
from . import cli
from ._support import progress, session


@cli.command("update-ips")
@click.option(
    "--url", default=ips.IPS_URL, show_default=True, help="Where Stripe publishes the list."
)
def update_ips(url: str) -> None:
    """Refresh Stripe's list of webhook addresses (STRIPE_HOOKS_ALLOWED_IPS = "stripe") into
    the instance folder; the app reads it when it starts."""
    try:
        saved = ips.update_ips(current_app.instance_path, url)
    except ValueError as exc:
        click.echo(f"Error: {exc}; the current list is kept.", err=True)
        sys.exit(1)
    click.echo(f"Saved {len(saved)} addresses to {current_app.instance_path}/{ips.IPS_FILE}.")
    click.echo("Restart the app to use them.")


@cli.command("erase")
@click.option("--customer", required=True, help="The customer's id (cus_...).")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
def erase(customer: str, dry_run: bool) -> None:
    """Delete the events about one customer (data.object.id or data.object.customer) and
    their deliveries, in one transaction."""
    if not customer.strip():
        raise click.BadParameter("give the customer's id (cus_...)", param_hint="--customer")
    events, deliveries = retention.erase_customer(session(), customer.strip(), dry_run=dry_run)
    verb = "Would delete" if dry_run else "Deleted"
    click.echo(f"{verb} {events} event(s) and {deliveries} delivery(ies) of {customer.strip()}.")


@cli.command("fill-object-ids")
def fill_object_ids() -> None:
    """Give events stored before object ids were kept the id of their object, so that
    'events --object' and the admin's object filter list them. Safe to run while the app
    runs, and again."""
    state = get_state()
    todo = retention.without_object_id(state)
    if not todo:
        click.echo("fill-object-ids: every event has its object id already.")
        return
    with progress(None, "Filling", length=todo) as bar:
        filled = retention.fill_object_ids(state, progress=bar.update)
    click.echo(f"fill-object-ids: filled {filled} event(s); {todo - filled} are about no object.")
