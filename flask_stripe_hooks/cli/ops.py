"""Commands to run the extension in production: ``doctor``, ``fetch-missed`` (with
``--undelivered``, ``--connected-account``, ``--all-connected``, or ``--payload thin``),
``upgrade-endpoint`` and ``migrate-to-thin``,
added to the ``flask stripe-hooks`` group.

Thin, as :mod:`flask_stripe_hooks.cli` is: :mod:`flask_stripe_hooks.health`,
:mod:`flask_stripe_hooks.backfill` and :mod:`flask_stripe_hooks.endpoints` do the work.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import click

from .. import backfill, health, repair, thin_migration, thin_recovery
from ..events import PAYLOAD_STYLES
from ..state import get_state
from . import cli
from ._support import (
    DRY_RUN,
    DURATION,
    MODES,
    AccountId,
    check_type,
    find_endpoint,
    progress,
    refused,
)
from .endpoints import describe


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--fix", is_flag=True, help="Offer the safe fixes, one question each.")
@click.option(
    "--reenable", is_flag=True, help="With --fix: offer to enable endpoints Stripe disabled."
)
@click.option("--yes", is_flag=True, help="With --fix: apply without asking.")
def doctor(as_json: bool, fix: bool, reenable: bool, yes: bool) -> None:
    """Check every endpoint against Stripe and here; exit 1 when something is wrong."""
    state = get_state()
    findings = health.check_all(state, notify=True)
    if fix:
        fixable = [f for f in findings if f.action and (f.action[0] != "enable" or reenable)]
        for finding in fixable:
            if yes or click.confirm(f"{finding.endpoint}: {finding.message} Fix it?"):
                with refused():
                    click.echo(repair.apply_fix(finding), err=as_json)
        if fixable:
            findings = health.check_all(state)
    problems = health.problems(findings)
    if as_json:
        data = {"ok": not problems, "findings": [f.as_dict() for f in findings]}
        click.echo(json.dumps(data, indent=2))
    else:
        _print_findings(findings)
        errors = sum(f.severity == health.ERROR for f in problems)
        click.echo(
            f"doctor: {len(problems)} problem(s), {errors} error(s)"
            if problems
            else "doctor: all well"
        )
    if problems:
        raise SystemExit(1)


def _print_findings(findings: list[health.Finding]) -> None:
    where = None
    for finding in findings:
        if finding.endpoint != where:
            where = finding.endpoint
            click.echo(f"endpoint {where}" if where else "events")
        click.echo(f"  {finding.severity:<7} {finding.code}: {finding.message}")
        if finding.fix:
            click.echo(f"          fix: {finding.fix}")


@cli.command("fetch-missed")
@click.option("--since", type=DURATION, default="3d", show_default=True, help="At most 30d.")
@click.option("--type", "type_prefix", help="Only this type or types below it.")
@click.option(
    "--undelivered",
    is_flag=True,
    help="Only events Stripe failed to deliver (delivery_success=false).",
)
@click.option("--account", default="", help="Name of the account in STRIPE_HOOKS_ACCOUNTS.")
@click.option("--mode", type=MODES, default="test", show_default=True)
@click.option(
    "--connected-account",
    "connected",
    type=AccountId(),
    multiple=True,
    help="Read this connected account's events instead (repeatable).",
)
@click.option(
    "--all-connected",
    is_flag=True,
    help="Read the events of every connected account seen in events stored within --since.",
)
@click.option(
    "--payload",
    type=click.Choice(PAYLOAD_STYLES),
    default="snapshot",
    show_default=True,
    help="thin: read thin events (GET /v2/core/events) instead of snapshot events.",
)
@click.option(
    "--endpoint",
    "endpoint_id",
    help="With --payload thin: the thin endpoint to record them for (default: the only one).",
)
@DRY_RUN
def fetch_missed(
    since: timedelta,
    type_prefix: str | None,
    undelivered: bool,
    account: str,
    mode: str,
    connected: tuple[str, ...],
    all_connected: bool,
    payload: str,
    endpoint_id: str | None,
    dry_run: bool,
) -> None:
    """Read recent events from Stripe; store and process those that never arrived."""
    state, livemode, thin = get_state(), mode == "live", payload == "thin"
    check_type(type_prefix, thin=thin)
    if connected and all_connected:
        raise click.ClickException("Give --connected-account or --all-connected, not both.")
    if thin and undelivered:
        raise click.ClickException(
            "Stripe's v2 events API cannot tell undelivered events: run 'fetch-missed"
            " --payload thin' without --undelivered (it stores every event not stored here)."
        )
    if thin and (connected or all_connected):
        raise click.ClickException(
            "--connected-account and --all-connected read snapshot events (/v1/events);"
            " thin events carry their account as their context."
        )
    if endpoint_id and not thin:
        raise click.ClickException("--endpoint is for --payload thin.")
    options: dict[str, Any] = {
        "since": since,
        "type_prefix": type_prefix,
        "account": account,
        "livemode": livemode,
    }
    endpoint = None
    failed: list[tuple[str, str]] = []
    if thin:
        named = find_endpoint(endpoint_id) if endpoint_id else None
        with refused():
            endpoint = thin_recovery.thin_endpoint(
                state, account=account, livemode=livemode, named=named
            )
            found = [thin_recovery.find_missed_thin(state, **options, endpoint=endpoint)]
    else:
        accounts = list(connected) or [""]
        if all_connected:
            accounts = backfill.connected_accounts(state, since=since, livemode=livemode)
            if not accounts:
                click.echo(f"No {mode}-mode event of a connected account is stored within --since.")
                return
        with refused():
            found, failed = backfill.find_missed_in(
                state, accounts, **options, undelivered=undelivered
            )
    which = "undelivered event(s)" if undelivered else "thin event(s)" if thin else "event(s)"
    for missed in found:
        where = f"{missed.connected}: " if missed.connected else ""
        click.echo(
            f"{where}Stripe listed {missed.seen} {which}; {len(missed.events)} not stored here."
        )
    for connected_account, reason in failed:
        click.echo(f"{connected_account}: {reason}")
    events = [event for missed in found for event in missed.events]
    if dry_run:
        for event in events:
            created = event.created_at.strftime("%Y-%m-%d %H:%M:%S") if event.created_at else "-"
            click.echo(f"  {event.id}  {event.type}  {event.account or '-'}  {created}")
        click.echo(f"fetch-missed: dry run, would store {len(events)}")
    else:
        with progress(events, "Storing") as bar:
            summary = backfill.store_missed(state, bar, endpoint)
        backfill.reconciled(found, summary, undelivered=undelivered)
        click.echo(f"fetch-missed: {summary.line()}")
        if summary.failed:
            raise click.ClickException(
                f"{summary.failed} event(s) failed in their handlers; they are stored as failed:"
                " see 'flask stripe-hooks events --status failed', then 'reprocess --failed'."
            )
    if failed:
        raise click.ClickException(f"{len(failed)} connected account(s) could not be read.")


@cli.command("upgrade-endpoint")
@click.argument("endpoint_id")
@click.option("--api-version", required=True, help="The API version of the new endpoint.")
@click.option("--base-url", help="Base URL of this app (default: the old endpoint's URL).")
def upgrade_endpoint(endpoint_id: str, api_version: str, base_url: str | None) -> None:
    """Create a twin of an endpoint pinned to another API version; the old one keeps
    running until you disable it (events both receive are processed once)."""
    old = find_endpoint(endpoint_id)
    with refused():
        new = repair.upgrade_endpoint(old, api_version=api_version, base_url=base_url)
    click.echo(f"Created endpoint {new.uuid} on API version {api_version}:")
    describe(new)
    click.echo(
        "Both endpoints receive every event now; each event runs its handlers once."
        " Once the new one has delivered for a while ('flask stripe-hooks doctor'),"
        f" turn the old one off: flask stripe-hooks update-endpoint {old.uuid} --disable"
    )


@cli.command("migrate-to-thin")
@click.argument("endpoint_id", metavar="UUID")
@click.option("--base-url", help="Base URL of this app (default: the snapshot endpoint's URL).")
@click.option("--cutover", is_flag=True, help="Shadow → cutover: thin events run for real.")
@click.option("--retire", is_flag=True, help="Cutover → done: disable the snapshot endpoint.")
@click.option("--force", is_flag=True, help="With --cutover: even if shadow events failed.")
def migrate_to_thin(
    endpoint_id: str, base_url: str | None, cutover: bool, retire: bool, force: bool
) -> None:
    """Move the snapshot endpoint UUID to thin events: a thin destination mirroring its
    types (shadow), then --cutover, then --retire. Run without a flag to see where it is."""
    if cutover and retire:
        raise click.ClickException("Choose one step: --cutover or --retire.")
    snapshot = find_endpoint(endpoint_id)
    with refused():
        if cutover:
            thin = thin_migration.cutover(snapshot, force=force)
        elif retire:
            thin = thin_migration.retire(snapshot)
        else:
            started = thin_migration.thin_of(snapshot) is None
            thin = thin_migration.start(snapshot, base_url=base_url)
            if started:
                click.echo(f"Created thin endpoint {thin.uuid}, mirroring {snapshot.uuid}:")
                describe(thin)
    for line in thin_migration.report(get_state(), thin).lines():
        click.echo(line)
