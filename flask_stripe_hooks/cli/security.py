"""``flask stripe-hooks`` commands for secrets at rest and the audit trail: encrypt-secrets,
rotate-encryption-key, check-encryption, audit. Each calls :mod:`flask_stripe_hooks.crypto` or
:mod:`flask_stripe_hooks.audit`; none prints a secret."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import click

from .. import audit, crypto
from ..errors import UnreadableSecret
from ..state import get_state
from . import cli
from ._support import DRY_RUN, session, table


def _migrate(operation: Callable[..., tuple[int, int]], verb: str, dry_run: bool) -> None:
    try:
        rows, secrets = operation(get_state(), dry_run=dry_run)
    except UnreadableSecret as exc:
        raise click.ClickException(f"{exc} Nothing was changed.") from None
    done = f"Would {verb.lower()}" if dry_run else f"{verb}ed"
    click.echo(f"{done} {secrets} secret(s) of {rows} endpoint(s).")


@cli.command("encrypt-secrets")
@DRY_RUN
def encrypt_secrets(dry_run: bool) -> None:
    """Encrypt every signing secret stored in the clear with STRIPE_HOOKS_ENCRYPTION_KEY.

    Secrets encrypted already are left alone: running it again changes nothing."""
    _migrate(crypto.encrypt_all, "Encrypt", dry_run)


@cli.command("rotate-encryption-key")
@DRY_RUN
def rotate_encryption_key(dry_run: bool) -> None:
    """Re-encrypt every signing secret with the first key of STRIPE_HOOKS_ENCRYPTION_KEY.

    Put the new key first and the old one after it, run this, then remove the old key."""
    _migrate(crypto.rotate_all, "Re-encrypt", dry_run)


@cli.command("check-encryption")
def check_encryption() -> None:
    """Try to decrypt every stored signing secret; exit 1 naming the endpoints that fail."""
    bad = crypto.unreadable(get_state())
    if bad:
        click.echo(
            f"{crypto.KEY} cannot decrypt the secrets of {len(bad)} endpoint(s): " + ", ".join(bad),
            err=True,
        )
        raise SystemExit(1)
    click.echo("Every stored signing secret can be decrypted.")


@cli.command("audit")
@click.argument("endpoint_uuid", required=False, type=click.UUID)
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
def audit_trail(endpoint_uuid: uuid.UUID | None, limit: int) -> None:
    """The latest changes of endpoints (of ENDPOINT_UUID only, when given), newest first."""
    rows = audit.entries(session(), endpoint_uuid, limit)
    if not rows:
        click.echo("No changes recorded.")
        return
    table(
        ("at", "endpoint", "actor", "source", "action", "changes"),
        [
            (
                row.at.strftime("%Y-%m-%d %H:%M:%S"),
                str(row.endpoint_uuid),
                row.actor,
                row.source,
                row.action,
                audit.describe(row.changes, row.action),
            )
            for row in rows
        ],
    )
