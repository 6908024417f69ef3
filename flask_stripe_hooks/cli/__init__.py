"""``flask stripe-hooks ...``: the one click group, attached by ``init_app`` with
``app.cli.add_command``. Each module of this package adds its family of commands to it:

- :mod:`.endpoints`: register, list, create, update, delete, sync endpoints; secrets; listen;
- :mod:`.events`: look at events, send test events, reprocess, pause and resume, prune;
- :mod:`.ops`: doctor, fetch-missed, upgrade-endpoint;
- :mod:`.data`: update-ips, erase;
- :mod:`.security`: encryption of stored secrets, the audit trail.

Commands run inside the app context Flask's CLI provides; each parses its arguments and calls
the function that does the work. Errors end in a ``click.ClickException`` with a message to
act on (a database without this extension's tables: "run 'flask db upgrade'"); a signing secret
that cannot be decrypted ends any command that meets it that way too. No command prints a
secret.
"""

from __future__ import annotations

from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy.exc import DBAPIError

from ..errors import UnreadableSecret
from ..utils import schema_missing, upgrade_hint


class Commands(AppGroup):
    """The group: a stored secret that ``STRIPE_HOOKS_ENCRYPTION_KEY`` cannot decrypt ends
    whichever command meets it with one line naming the key and ``check-encryption``; a
    command run before the migration says what to run, in one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UnreadableSecret as exc:
            raise click.ClickException(exc.message) from None
        except DBAPIError as exc:
            said = schema_missing(exc)
            if said is None:
                raise
            raise click.ClickException(upgrade_hint(said)) from None


cli = Commands("stripe-hooks", help="Stripe webhook endpoints and events.")

# Each adds its commands to ``cli``.
from . import data, endpoints, events, ops, security  # noqa: E402, F401
