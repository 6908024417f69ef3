"""``flask stripe-hooks ...``: manage endpoints, look at events, send test events, recover.

Commands run inside the app context Flask's CLI provides; errors end in a
``click.ClickException`` with a message to act on. No command prints a secret.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid as uuid_mod
from collections.abc import Sequence
from typing import Any

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from . import event_types
from .extension import get_state
from .models import EVENT_STATUSES, StripeEvent, WebhookEndpoint
from .processing import active_secrets, process_stored
from .testing import build_event, sign_payload, webhook_path
from .utils import utcnow

cli = AppGroup("stripe-hooks", help="Stripe webhook endpoints and events.")

MODES = click.Choice(["test", "live"])


def _session():  # type: ignore[no-untyped-def]
    return get_state().db.session


def find_endpoint(value: str) -> WebhookEndpoint:
    """An endpoint by uuid (or Stripe id ``we_...``), or a ClickException."""
    session = _session()
    if value.startswith("we_"):
        query = sa.select(WebhookEndpoint).where(WebhookEndpoint.stripe_id == value)
    else:
        try:
            parsed = uuid_mod.UUID(value)
        except ValueError:
            raise click.ClickException(
                f"{value!r} is not an endpoint uuid; see 'flask stripe-hooks list-endpoints'."
            ) from None
        query = sa.select(WebhookEndpoint).where(WebhookEndpoint.uuid == parsed)
    endpoint = session.execute(query).scalar_one_or_none()
    if endpoint is None:
        raise click.ClickException(f"No endpoint {value}; see 'flask stripe-hooks list-endpoints'.")
    return endpoint


def check_secret(secret: str) -> str:
    secret = secret.strip()
    if not secret.startswith("whsec_") or len(secret) < 12:
        raise click.ClickException(
            "A signing secret starts with 'whsec_' (Stripe Dashboard → Webhooks → your"
            " endpoint → Signing secret, or the line 'stripe listen' prints)."
        )
    return secret


@cli.command("register-endpoint")
@click.option(
    "--secret",
    prompt="Signing secret (whsec_...)",
    hide_input=True,
    help="The endpoint's signing secret; prompted for (hidden) when left out.",
)
@click.option("--mode", type=MODES, default="test", show_default=True)
@click.option("--stripe-id", help="The endpoint's id on Stripe (we_...), if it has one.")
@click.option("--account", default="", help="Name of the account in STRIPE_HOOKS_ACCOUNTS.")
@click.option("--description", default="")
def register_endpoint(
    secret: str, mode: str, stripe_id: str | None, account: str, description: str
) -> None:
    """Record an endpoint made elsewhere (Dashboard, 'stripe listen') with its secret."""
    secret = check_secret(secret)
    if stripe_id and not stripe_id.startswith("we_"):
        raise click.ClickException("A Stripe endpoint id starts with 'we_'.")
    session = _session()
    if (
        stripe_id
        and session.execute(
            sa.select(WebhookEndpoint.id).where(WebhookEndpoint.stripe_id == stripe_id)
        ).first()
    ):
        raise click.ClickException(f"Endpoint {stripe_id} is registered already.")
    endpoint = WebhookEndpoint(
        secrets=[{"secret": secret, "expires_at": None}],
        livemode=mode == "live",
        stripe_id=stripe_id,
        account=account,
        description=description,
    )
    session.add(endpoint)
    session.commit()
    click.echo(f"Registered {mode}-mode endpoint {endpoint.uuid}")
    click.echo(f"URL path: {webhook_path(current_app, endpoint.uuid)}")


@cli.command("list-endpoints")
def list_endpoints() -> None:
    """List the endpoints (never their secrets)."""
    endpoints = _session().execute(sa.select(WebhookEndpoint).order_by(WebhookEndpoint.id))
    now = utcnow()
    rows = [
        (
            str(e.uuid),
            e.mode,
            e.status,
            e.stripe_id or "-",
            e.account or "-",
            f"{len(active_secrets(e.secrets, now))} active secret(s)",
            e.url or webhook_path(current_app, e.uuid),
        )
        for e in endpoints.scalars()
    ]
    if not rows:
        click.echo("No endpoints. Add one with 'register-endpoint' or 'create-endpoint'.")
        return
    _table(("uuid", "mode", "status", "stripe id", "account", "secrets", "url"), rows)


@cli.command("events")
@click.option("--type", "type_prefix", help="Only this type or types below it.")
@click.option("--status", type=click.Choice(EVENT_STATUSES))
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
def list_events(type_prefix: str | None, status: str | None, limit: int) -> None:
    """List stored events, newest first."""
    query = sa.select(StripeEvent).order_by(StripeEvent.received_at.desc()).limit(limit)
    if type_prefix:
        prefix = type_prefix.removesuffix(".*")
        query = query.where(
            sa.or_(StripeEvent.type == prefix, StripeEvent.type.startswith(prefix + "."))
        )
    if status:
        query = query.where(StripeEvent.status == status)
    rows = [
        (
            e.id,
            e.type,
            e.status,
            str(e.attempts),
            "live" if e.livemode else "test",
            e.received_at.strftime("%Y-%m-%d %H:%M:%S"),
            (e.last_error or "")[:60],
        )
        for e in _session().execute(query).scalars()
    ]
    if not rows:
        click.echo("No events match.")
        return
    _table(("id", "type", "status", "attempts", "mode", "received", "last error"), rows)


@cli.command("event-types")
@click.argument("prefix", required=False)
def list_event_types(prefix: str | None) -> None:
    """Print the event types Stripe sends (from the installed stripe-python)."""
    names = event_types.matching(prefix) if prefix else event_types.all_event_types()
    if not names:
        hint = event_types.closest(prefix or "")
        raise click.ClickException(
            f"No event type matches {prefix!r}" + (f"; did you mean {hint!r}?" if hint else ".")
        )
    for name in names:
        click.echo(name)


@cli.command("send-test-event")
@click.argument("event_type")
@click.option("--endpoint", "endpoint_id", help="Endpoint uuid (default: the only one).")
@click.option("--data", help='JSON merged into data.object, e.g. \'{"email": "a@b.c"}\'.')
@click.option("--url", help="Post to a running server (its base URL) instead of in-process.")
def send_test_event(
    event_type: str, endpoint_id: str | None, data: str | None, url: str | None
) -> None:
    """Build, sign and deliver a realistic event of EVENT_TYPE to an endpoint."""
    if not event_types.is_known(event_type) or event_type == "*":
        hint = event_types.closest(event_type)
        raise click.ClickException(
            f"{event_type!r} is not a Stripe event type"
            + (f"; did you mean {hint!r}?" if hint else "; see 'event-types'.")
        )
    try:
        extra = json.loads(data) if data else None
    except ValueError as exc:
        raise click.ClickException(f"--data is not valid JSON: {exc}") from None
    if extra is not None and not isinstance(extra, dict):
        raise click.ClickException("--data must be a JSON object.")
    endpoint = find_endpoint(endpoint_id) if endpoint_id else _only_endpoint()
    if not endpoint.enabled:
        raise click.ClickException(f"Endpoint {endpoint.uuid} is disabled.")
    secrets = active_secrets(endpoint.secrets, utcnow())
    if not secrets:
        raise click.ClickException(f"Endpoint {endpoint.uuid} has no active secret.")
    event = build_event(
        event_type, extra, livemode=endpoint.livemode, account=endpoint.account or None
    )
    body, header = sign_payload(event, secrets[0])
    path = webhook_path(current_app, endpoint.uuid)
    headers = {"Stripe-Signature": header, "Content-Type": "application/json"}
    _session().rollback()  # hold no transaction while the delivery runs
    if url:
        target = url if "/webhook/" in url else url.rstrip("/") + path
        status, text = _post(target, body.encode(), headers)
    else:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        # A fresh app context: its own session, so a rollback in a handler touches
        # nothing of this command's.
        with app.app_context():
            response = app.test_client().post(path, data=body, headers=headers)
            status, text = response.status_code, response.get_data(as_text=True)
    click.echo(f"{event['id']} {event_type} → {status} {text.strip()}")
    if status >= 300:
        raise click.exceptions.Exit(1)


def _only_endpoint() -> WebhookEndpoint:
    endpoints = list(
        _session()
        .execute(sa.select(WebhookEndpoint).where(WebhookEndpoint.status == "enabled"))
        .scalars()
    )
    if len(endpoints) == 1:
        return endpoints[0]
    if not endpoints:
        raise click.ClickException(
            "No enabled endpoint; add one with 'flask stripe-hooks register-endpoint'."
        )
    raise click.ClickException("Several endpoints; choose one with --endpoint UUID.")


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        raise click.ClickException(f"Could not reach {url}: {exc}") from None


@cli.command("reprocess")
@click.argument("event_ids", nargs=-1, required=True)
def reprocess(event_ids: tuple[str, ...]) -> None:
    """Run stored events through their handlers again (even if already processed)."""
    state = get_state()
    failed = 0
    for event_id in event_ids:
        result = process_stored(state, event_id, force=True)
        click.echo(
            f"{event_id}: {result.outcome}" + (f" ({result.reason})" if result.reason else "")
        )
        failed += not result.ok
    if failed:
        raise click.ClickException(f"{failed} of {len(event_ids)} event(s) failed.")


def _table(header: tuple[str, ...], rows: Sequence[tuple[Any, ...]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
