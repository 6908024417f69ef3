"""Managing webhook endpoints on Stripe and in the database together.

The CLI (``flask stripe-hooks create-endpoint`` ...) and the admin pages are thin callers of
these functions. Each runs in an app context and commits. Bad input raises
:class:`EndpointError` before any call to Stripe; Stripe's refusals raise
:class:`~flask_stripe_hooks.errors.StripeAPIError`. Both are
:class:`~flask_stripe_hooks.errors.StripeHooksError` with ``message`` and ``field``
(``"url"``, ``"enabled_events"``, ``"metadata"``, ``"api_version"``, ``"secret"``, ...).

Nothing is left half-written: Stripe is called first, and when the database then refuses the
row, the change on Stripe is undone (a created endpoint is deleted again).
"""

from __future__ import annotations

import logging
import re
import uuid as uuid_mod
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import stripe

from . import audit, event_types, stripe_api
from .crypto import seal, unseal
from .errors import EndpointError, StripeAPIError
from .events import PAYLOAD_STYLES, SNAPSHOT, THIN
from .models import WebhookEndpoint, active_secrets, audit_table, delivery_table, event_table
from .public_url import LISTEN_HINT, check_base_url
from .state import get_state
from .stripe_api import client_for
from .utils import schema_missing, upgrade_hint, utcnow

__all__ = ["LISTEN_HINT", "EndpointError", "check_base_url"]  # and the operations below

log = logging.getLogger("flask_stripe_hooks")

#: The metadata key, on Stripe, that ties an endpoint to its row here.
METADATA_KEY = "flask_stripe_hooks_uuid"
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")


def _session() -> Any:
    return get_state().db.session


# -- checks (no call to Stripe) ---------------------------------------------------------------


def expand_events(patterns: list[str], *, thin: bool = False) -> list[str]:
    """The exact event types Stripe should send, from names and patterns.

    ``["*"]`` stays ``["*"]``; ``customer.subscription.*`` or a prefix such as
    ``customer.subscription`` becomes every real type below it (Stripe accepts only ``*``
    or exact names). Commas separate names too. Unknown names raise :class:`EndpointError`
    with the closest real name.

    ``thin``: names of thin events (``v1.billing.meter.*``), checked against the event
    notification types of stripe-python; ``*`` there becomes every one of them.
    """
    names = [name for item in patterns for name in re.split(r"[,\s]+", item) if name]
    if not names:
        raise EndpointError("Choose at least one event type, or '*' for all.", "enabled_events")
    if "*" in names:
        return list(event_types.thin_event_types()) if thin else ["*"]
    out: set[str] = set()
    for name in names:
        types = event_types.matching(name, thin=thin)
        if not types and event_types.matching(name, thin=not thin):
            raise EndpointError(_wrong_style(name, thin), "enabled_events")
        if not types:
            raise EndpointError(
                event_types.unknown_type_message(
                    name, thin=thin, fallback="; see 'flask stripe-hooks event-types'."
                ),
                "enabled_events",
            )
        out.update(types)
    return sorted(out)


def _wrong_style(name: str, thin: bool) -> str:
    if thin:
        return (
            f"{name!r} is a snapshot event type; a thin endpoint takes thin types such as"
            " 'v1.billing.meter.no_meter_found' (see 'flask stripe-hooks event-types --thin')."
        )
    return f"{name!r} is a thin event type; it needs an endpoint with payload style thin."


def check_payload(payload: str) -> str:
    if payload not in PAYLOAD_STYLES:
        raise EndpointError(
            f"The payload style is 'snapshot' or 'thin', not {payload!r}.", "payload"
        )
    return payload


def _check_metadata(metadata: dict[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        key = str(key).strip()
        if not key or len(key) > 40 or "[" in key or "]" in key:
            raise EndpointError(
                f"Metadata key {key!r} must be 1 to 40 characters, without '[' or ']'.",
                "metadata",
            )
        if key == METADATA_KEY:
            raise EndpointError(
                f"Metadata key {METADATA_KEY!r} is set by flask-stripe-hooks.", "metadata"
            )
        text = "" if value is None else str(value)
        if len(text) > 500:
            raise EndpointError(f"Metadata value of {key!r} is over 500 characters.", "metadata")
        out[key] = text
    if len(out) > 49:
        raise EndpointError("Stripe allows at most 50 metadata keys (one is ours).", "metadata")
    return out


def _check_api_version(version: str) -> str:
    version = version.strip()
    if not _API_VERSION.match(version):
        raise EndpointError(
            f"{version!r} is not a Stripe API version; write it as {stripe.api_version}.",
            "api_version",
        )
    return version


#: Where a signing secret is found, for the messages about one.
_SECRET_SOURCE = (
    "Stripe Dashboard → Webhooks → your endpoint → Signing secret, or the line"
    " 'stripe listen' prints"
)
#: Stripe's are longer (32 characters or more after ``whsec_``); shorter is a cut-off paste.
MIN_SECRET_LENGTH = 12


def check_secret(secret: str) -> str:
    """The signing secret, stripped, or :class:`EndpointError` saying what is wrong with it
    (never showing it)."""
    secret = (secret or "").strip()
    if not secret.startswith("whsec_"):
        problem = "A signing secret starts with 'whsec_'"
    elif len(secret) < MIN_SECRET_LENGTH:
        problem = (
            f"This signing secret is too short ({len(secret)} characters; Stripe's have"
            " 32 or more after 'whsec_'): copy all of it"
        )
    elif any(c.isspace() for c in secret):
        problem = "A signing secret has no spaces or line breaks inside: copy it again"
    else:
        return secret
    raise EndpointError(f"{problem} ({_SECRET_SOURCE}).", "secret")


def get_endpoint(value: WebhookEndpoint | uuid_mod.UUID | str) -> WebhookEndpoint:
    """An endpoint row in this app context's session: by row, uuid or Stripe id (``we_...``)."""
    session = _session()
    if isinstance(value, WebhookEndpoint):
        return value if value in session else session.merge(value)
    if isinstance(value, str) and value.startswith(("we_", "ed_")):
        where = WebhookEndpoint.stripe_id == value
    else:
        try:
            parsed = value if isinstance(value, uuid_mod.UUID) else uuid_mod.UUID(value)
        except ValueError:
            raise EndpointError(f"{value!r} is not an endpoint uuid.") from None
        where = WebhookEndpoint.uuid == parsed
    endpoint = session.execute(sa.select(WebhookEndpoint).where(where)).scalar_one_or_none()
    if endpoint is None:
        raise EndpointError(f"No endpoint {value}.")
    return endpoint  # type: ignore[no-any-return]


def only_enabled_endpoint() -> WebhookEndpoint:
    """The one enabled endpoint, for commands that may leave the endpoint out."""
    query = sa.select(WebhookEndpoint).where(WebhookEndpoint.status == "enabled").limit(2)
    endpoints = list(_session().execute(query).scalars())
    if not endpoints:
        raise EndpointError(
            "No enabled endpoint; add one with 'flask stripe-hooks register-endpoint'."
        )
    if len(endpoints) > 1:
        raise EndpointError(
            "Several endpoints; choose one with --endpoint UUID ('flask stripe-hooks"
            " list-endpoints' shows them)."
        )
    return endpoints[0]  # type: ignore[no-any-return]


def register_endpoint(
    secret: str,
    *,
    livemode: bool = False,
    stripe_id: str | None = None,
    account: str = "",
    description: str = "",
    payload: str = "snapshot",
    enabled_events: list[str] | None = None,
) -> WebhookEndpoint:
    """Record an endpoint created elsewhere (the Dashboard, ``stripe listen``) with its secret."""
    secret = check_secret(secret)
    payload = check_payload(payload)
    prefix = "ed_" if payload == "thin" else "we_"
    if stripe_id and not stripe_id.startswith(prefix):
        kind = "An event destination" if payload == "thin" else "A Stripe endpoint"
        raise EndpointError(f"{kind} id starts with '{prefix}'.", "stripe_id")
    session = _session()
    if (
        stripe_id
        and session.execute(
            sa.select(WebhookEndpoint.id).where(WebhookEndpoint.stripe_id == stripe_id)
        ).first()
    ):
        raise EndpointError(f"Endpoint {stripe_id} is registered already.", "stripe_id")
    endpoint = WebhookEndpoint(
        secrets=[{"secret": seal(secret), "expires_at": None}],
        livemode=livemode,
        stripe_id=stripe_id,
        account=account,
        description=description,
        payload=payload,
        enabled_events=enabled_events or ["*"],
    )
    session.add(endpoint)
    commit("the new endpoint", endpoint, "created", created_values(endpoint))
    return endpoint


def _on_stripe(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """The keywords of stripe_api's endpoint calls that find this endpoint's twin."""
    return {"thin": endpoint.thin, "account": endpoint.account, "livemode": endpoint.livemode}


def fields_of(endpoint: WebhookEndpoint, names: Any) -> dict[str, Any]:
    """The endpoint's values of these fields (an audit row's \"before\")."""
    return {name: getattr(endpoint, name) for name in names}


def created_values(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "mode": endpoint.mode,
        "stripe_id": endpoint.stripe_id,
        "url": endpoint.url,
        "enabled_events": list(endpoint.enabled_events),
    }


def commit(
    what: str,
    endpoint: WebhookEndpoint | None = None,
    action: str = "",
    changes: dict[str, Any] | None = None,
) -> None:
    """Commit, with an audit row for ``action`` on ``endpoint`` in the same transaction."""
    session = _session()
    try:
        if endpoint is not None:
            session.flush()
            audit.record(session, endpoint, action, changes)
        session.commit()
    except Exception as exc:
        session.rollback()
        said = schema_missing(exc)
        if said is not None:
            raise EndpointError(upgrade_hint(said)) from exc
        raise EndpointError(f"The database refused {what}: {type(exc).__name__}.") from exc


# -- create, update, delete ------------------------------------------------------------------


def create_endpoint(
    *,
    base_url: str,
    events: list[str] | None = None,
    livemode: bool = False,
    account: str = "",
    api_version: str | None = None,
    description: str = "",
    metadata: dict[str, Any] | None = None,
    connect: bool = False,
    payload: str = SNAPSHOT,
    migration: dict[str, str] | None = None,
) -> WebhookEndpoint:
    """Create an endpoint on Stripe and store it with its one-time signing secret.

    ``payload="thin"`` creates a v2 event destination for thin events instead
    (``POST /v2/core/event_destinations``); it takes thin event types and no API version.

    Its URL is ``base_url`` + ``{STRIPE_HOOKS_URL_PREFIX}/webhook/<new uuid>/``; the uuid
    is also put in the Stripe endpoint's metadata (``flask_stripe_hooks_uuid``). Events
    default to ``*``; the API version to ``STRIPE_API_VERSION``, else the version of the
    installed stripe-python, so events arrive in the shape the library expects.
    ``migration``: what ``migrate-to-thin`` records on the thin endpoint it makes.
    """
    state = get_state()
    base = check_base_url(base_url)
    if livemode and not base.startswith("https://"):
        raise EndpointError("Stripe sends live-mode events only to https:// URLs.", "url")
    thin = check_payload(payload) == THIN
    enabled_events = expand_events(events or ["*"], thin=thin)
    meta = _check_metadata(metadata)
    if thin and api_version:
        raise EndpointError(
            "Thin events have no API version; leave it empty for a thin endpoint.", "api_version"
        )
    version = api_version or stripe_api.api_version(state)
    version = "" if thin else _check_api_version(version)
    description = (description or "").strip()
    client_for(state, account=account, livemode=livemode)  # a missing key fails here, first

    endpoint_uuid = uuid_mod.uuid4()
    url = base + state.webhook_path(endpoint_uuid)
    params: dict[str, Any] = {
        "url": url,
        "enabled_events": enabled_events,
        "api_version": version,
        "metadata": {**meta, METADATA_KEY: str(endpoint_uuid)},
    }
    if description:
        params["description"] = description
    if connect:
        params["connect"] = True
    where: dict[str, Any] = {"thin": thin, "account": account, "livemode": livemode}
    name = f"flask-stripe-hooks {endpoint_uuid}"
    remote = stripe_api.create_endpoint(state, params, name=name, **where)
    stripe_id = remote["id"]

    def undo() -> None:
        try:
            stripe_api.delete_endpoint(state, stripe_id, **where)
        except StripeAPIError as exc:
            log.error("could not delete endpoint %s on Stripe again: %s", stripe_id, exc)

    secret = remote.get("secret")
    if not secret:
        undo()
        raise StripeAPIError("Stripe returned no signing secret for the new endpoint.")
    endpoint = WebhookEndpoint(
        uuid=endpoint_uuid,
        stripe_id=stripe_id,
        url=remote.get("url") or url,
        livemode=livemode,
        account=account,
        secrets=[{"secret": seal(secret), "expires_at": None}],
        api_version=remote.get("api_version") or version,
        enabled_events=list(remote.get("enabled_events") or enabled_events),
        description=description,
        metadata_=meta,
        status="disabled" if remote.get("status") == "disabled" else "enabled",
        connect=connect,
        payload=THIN if thin else SNAPSHOT,
        migration=migration,
    )
    _session().add(endpoint)
    try:
        commit("the new endpoint", endpoint, "created", created_values(endpoint))
    except EndpointError as exc:
        undo()
        exc.message = exc.message.removesuffix(".") + "; it was deleted on Stripe again."
        raise
    log.info("created %s-mode endpoint %s (%s)", endpoint.mode, endpoint_uuid, stripe_id)
    return endpoint


def update_endpoint(
    endpoint: WebhookEndpoint,
    *,
    enabled: bool | None = None,
    events: list[str] | None = None,
    description: str | None = None,
) -> WebhookEndpoint:
    """Enable or disable an endpoint, change its events or description; on Stripe first
    when it has a Stripe id (even a change the row holds already: Stripe may differ). ``None``
    leaves a field as it is."""
    endpoint = get_endpoint(endpoint)
    local: dict[str, Any] = {}
    remote: dict[str, Any] = {}
    if events is not None:
        local["enabled_events"] = remote["enabled_events"] = expand_events(
            events, thin=endpoint.thin
        )
    if description is not None:
        local["description"] = remote["description"] = description.strip()
    if enabled is not None:
        if enabled and not active_secrets(endpoint.secrets, utcnow()):
            raise EndpointError(
                f"Endpoint {endpoint.uuid} has no signing secret; set one with 'flask"
                f" stripe-hooks set-secret {endpoint.uuid} whsec_...' before enabling it.",
                "enabled",
            )
        local["status"] = "enabled" if enabled else "disabled"
        remote["disabled"] = not enabled
    if not local:
        return endpoint
    before = {
        "enabled_events": list(endpoint.enabled_events),
        "description": endpoint.description,
        "disabled": not endpoint.enabled,
    }
    stripe_id = endpoint.stripe_id
    changes: dict[str, Any] = audit.diff(fields_of(endpoint, local), local)
    if not changes and not stripe_id:  # nothing to change, nor an audit row to write
        return endpoint
    where = _on_stripe(endpoint)
    if stripe_id:
        stripe_api.update_endpoint(get_state(), stripe_id, remote, **where)
    action = "updated" if enabled is None else "enabled" if enabled else "disabled"
    changes = changes or {"on Stripe": action}
    for key, value in local.items():
        setattr(endpoint, key, value)
    try:
        commit("the change", endpoint, action, changes)
    except EndpointError:
        if stripe_id:
            undo = {key: before[key] for key in remote}
            try:
                stripe_api.update_endpoint(get_state(), stripe_id, undo, **where)
            except StripeAPIError as exc:
                log.error("could not undo the change of %s on Stripe: %s", stripe_id, exc)
        raise
    return endpoint


def delete_endpoint(endpoint: WebhookEndpoint, *, keep_remote: bool = False) -> None:
    """Delete an endpoint on Stripe (unless ``keep_remote``), then here, with its deliveries.

    Stored events stay (their ``endpoint_id`` is cleared). An endpoint Stripe no longer has
    is not an error.
    """
    endpoint = get_endpoint(endpoint)
    if endpoint.stripe_id and not keep_remote:
        found = stripe_api.delete_endpoint(get_state(), endpoint.stripe_id, **_on_stripe(endpoint))
        if not found:
            log.info("endpoint %s was already gone on Stripe", endpoint.stripe_id)
    session = _session()
    endpoint_id = endpoint.id
    session.execute(delivery_table.delete().where(delivery_table.c.endpoint_id == endpoint_id))
    session.execute(
        event_table.update()
        .where(event_table.c.endpoint_id == endpoint_id)
        .values(endpoint_id=None)
    )
    session.execute(
        audit_table.update()
        .where(audit_table.c.endpoint_id == endpoint_id)
        .values(endpoint_id=None)
    )
    session.delete(endpoint)
    try:
        commit("the deletion", endpoint, "deleted", {"stripe_id": endpoint.stripe_id})
    except EndpointError as exc:
        if endpoint.stripe_id and not keep_remote:
            exc.message += (
                " It is deleted on Stripe already: run the command again with --keep-remote."
            )
        raise


def set_secret(
    endpoint: WebhookEndpoint, secret: str, *, keep_old_for: timedelta | None = None
) -> None:
    """Make ``secret`` the endpoint's signing secret.

    With ``keep_old_for`` the current secrets stay valid until now + that long (a rotation
    without lost events); with ``None`` or zero they are dropped at once. Stripe's API cannot
    roll a secret: roll it in the Dashboard, then set the new one here.
    """
    endpoint = get_endpoint(endpoint)
    secret = check_secret(secret)
    now = utcnow()
    kept: list[dict[str, Any]] = []
    if keep_old_for and keep_old_for.total_seconds() > 0:
        until = now + keep_old_for
        for item in endpoint.secrets or ():
            expires = item.get("expires_at")
            expiry = datetime.fromisoformat(expires) if expires else None
            if unseal(item["secret"]) == secret or (expiry is not None and expiry <= now):
                continue
            end = until if expiry is None else min(until, expiry)
            kept.append({"secret": seal(item["secret"]), "expires_at": end.isoformat()})
    endpoint.secrets = [*kept, {"secret": seal(secret), "expires_at": None}]
    last = max((item["expires_at"] for item in kept), default=None)
    note = f"rotated, {len(kept)} kept" + (f" until {last}" if last else "")
    commit("the new secret", endpoint, "secret-rotated", {"secret": note})
    log.info("new signing secret for endpoint %s (%d older kept)", endpoint.uuid, len(kept))
