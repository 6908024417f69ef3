"""What the ``flask stripe-hooks`` commands share: option types, tables, error translation."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import click

from .. import endpoints as endpoint_ops
from .. import event_types
from ..errors import StripeHooksError
from ..events import ACCOUNT_ID, ACCOUNT_PATH
from ..models import WebhookEndpoint
from ..state import get_state
from ..utils import parse_duration

MODES = click.Choice(["test", "live"])
PAYLOADS = click.Choice(["snapshot", "thin"])


F = TypeVar("F", bound=Callable[..., Any])


def payload_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--payload", type=PAYLOADS, default="snapshot", show_default=True, help=help
    )


def session() -> Any:
    return get_state().db.session


def find_endpoint(value: str) -> WebhookEndpoint:
    """An endpoint by uuid (or Stripe id ``we_...``/``ed_...``), or a ClickException."""
    try:
        return endpoint_ops.get_endpoint(value)
    except endpoint_ops.EndpointError as exc:
        raise click.ClickException(
            f"{exc.message} See 'flask stripe-hooks list-endpoints'."
        ) from None


@contextmanager
def refused() -> Iterator[None]:
    """EndpointError / StripeAPIError (a StripeHooksError) → a ClickException."""
    try:
        yield
    except StripeHooksError as exc:
        raise click.ClickException(exc.message) from None


class Duration(click.ParamType):  # type: ignore[type-arg]
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


class AccountId(click.ParamType):  # type: ignore[type-arg]
    """A Stripe account id, ``acct_...`` (with ``path``, also ``acct_.../acct_...``)."""

    name = "acct_..."

    def __init__(self, path: bool = False) -> None:
        self.pattern = ACCOUNT_PATH if path else ACCOUNT_ID

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        text = str(value).strip()
        if len(text) > 255 or not self.pattern.fullmatch(text):
            self.fail(f"{value!r} is not a Stripe account id (acct_...).", param, ctx)
        return text


DRY_RUN = click.option("--dry-run", is_flag=True, help="Show what would be done; change nothing.")


def progress(items: Sequence[Any] | None, label: str, length: int | None = None) -> Any:
    return click.progressbar(items, length, label=label, file=sys.stderr, show_pos=True)


def check_type(type_prefix: str | None, *, thin: bool | None = None) -> None:
    """A ``--type`` a user wrote: a known type or prefix (of thin events only, or of snapshot
    events only, when ``thin`` says so)."""
    prefix = event_types.normalize_prefix(type_prefix) or "*"
    if type_prefix and not event_types.is_known(prefix):
        message = event_types.unknown_type_message(type_prefix, prefix=True, thin=thin)
        raise click.ClickException(f"--type {message}")
    if thin is not None and prefix != "*" and event_types.is_thin_name(prefix) != thin:
        style, example = ("thin", "v1.customer") if thin else ("snapshot", "customer")
        raise click.ClickException(f"--type {type_prefix!r} is not a {style} type; e.g. {example}.")


def table(header: tuple[str, ...], rows: Sequence[tuple[Any, ...]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
