"""``sync-endpoints``: bring the endpoint rows here up to date with the account's endpoints on
Stripe, importing the ones this app does not know (disabled, until a secret is set): v1
webhook endpoints (snapshot events) and v2 event destinations of type webhook that send thin
events."""

from __future__ import annotations

import uuid as uuid_mod
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from . import audit
from .endpoints import METADATA_KEY, commit, created_values, fields_of
from .events import SNAPSHOT, THIN
from .models import WebhookEndpoint, active_secrets
from .state import get_state
from .stripe_api import list_thin_destinations, list_webhook_endpoints
from .utils import utcnow


@dataclass
class SyncResult:
    """What :func:`sync_endpoints` did; ``messages`` say what the user must do next."""

    updated: int = 0
    imported: int = 0
    unchanged: int = 0
    missing: int = 0
    messages: list[str] = field(default_factory=list)

    def line(self) -> str:
        """``1 updated, 2 imported, 0 unchanged, 1 missing on Stripe.``"""
        missing = f", {self.missing} missing on Stripe" if self.missing else ""
        done = f"{self.updated} updated, {self.imported} imported, {self.unchanged} unchanged"
        return done + missing + "."


def _remote_fields(remote: dict[str, Any], payload: str) -> dict[str, Any]:
    metadata = dict(remote.get("metadata") or {})
    metadata.pop(METADATA_KEY, None)
    fields = {
        "url": remote.get("url") or "",
        "enabled_events": list(remote.get("enabled_events") or []),
        "description": remote.get("description") or "",
        "api_version": remote.get("api_version") or "",
        "metadata_": metadata,
    }
    if payload == THIN:  # where its events come from: this account, or connected ones
        fields["connect"] = bool(remote.get("connect"))
    return fields


def _free_uuid(session: Any, value: str | None) -> uuid_mod.UUID:
    try:
        wanted = uuid_mod.UUID(value or "")
    except ValueError:
        return uuid_mod.uuid4()
    taken = session.execute(
        sa.select(WebhookEndpoint.id).where(WebhookEndpoint.uuid == wanted)
    ).first()
    return uuid_mod.uuid4() if taken else wanted


def sync_endpoints(*, account: str = "", livemode: bool = False) -> SyncResult:
    """Read the account's endpoints from Stripe and bring the rows here up to date: its v1
    webhook endpoints (snapshot endpoints here) and its v2 event destinations of type webhook
    that send thin events (thin endpoints here).

    Known endpoints (by Stripe id, or by the uuid in their metadata) get Stripe's URL,
    events, description, API version, metadata and status (and, for a thin one, whether it
    receives the connected accounts' events). Unknown ones are imported disabled: Stripe
    never returns a secret again, so theirs must be set with ``set-secret`` before they are
    enabled. Rows whose endpoint is gone on Stripe are counted as ``missing`` and left alone.
    """
    state = get_state()
    remotes = {
        SNAPSHOT: list_webhook_endpoints(state, account=account, livemode=livemode),
        THIN: list_thin_destinations(state, account=account, livemode=livemode),
    }
    result = SyncResult()
    for payload, found in remotes.items():
        _sync(found, payload, account, livemode, result)
    commit("the synced endpoints")
    return result


def _sync(
    remotes: list[dict[str, Any]], payload: str, account: str, livemode: bool, result: SyncResult
) -> None:
    """Bring the rows of one payload style up to date with what Stripe listed for it."""
    session = get_state().db.session
    local = list(
        session.execute(
            sa.select(WebhookEndpoint).where(
                WebhookEndpoint.account == account,
                WebhookEndpoint.livemode == livemode,
                WebhookEndpoint.payload == payload,
            )
        ).scalars()
    )
    by_stripe_id = {e.stripe_id: e for e in local if e.stripe_id}
    by_uuid = {str(e.uuid): e for e in local if not e.stripe_id}
    now = utcnow()
    for remote in remotes:
        fields = _remote_fields(remote, payload)
        tag = (remote.get("metadata") or {}).get(METADATA_KEY)
        endpoint = by_stripe_id.pop(remote["id"], None) or by_uuid.pop(tag or "", None)
        if endpoint is None:
            new_uuid = _free_uuid(session, tag)
            imported = WebhookEndpoint(
                uuid=new_uuid,
                stripe_id=remote["id"],
                livemode=livemode,
                account=account,
                secrets=[],
                status="disabled",
                payload=payload,
                **fields,
            )
            session.add(imported)
            session.flush()
            audit.record(session, imported, "imported", created_values(imported))
            result.imported += 1
            kind = "thin event destination" if payload == THIN else "webhook endpoint"
            result.messages.append(
                f"Imported {kind} {remote['id']} ({fields['url']}) as {new_uuid}, disabled:"
                f" set its signing secret with 'flask stripe-hooks set-secret {new_uuid}"
                f" whsec_...', then 'flask stripe-hooks update-endpoint {new_uuid} --enable'."
            )
            continue
        if remote.get("status") == "disabled" or not active_secrets(endpoint.secrets, now):
            fields["status"] = "disabled"
        else:
            fields["status"] = "enabled"
        fields["stripe_id"] = remote["id"]
        changed = {k: v for k, v in fields.items() if getattr(endpoint, k) != v}
        if not changed:
            result.unchanged += 1
            continue
        audit.record(session, endpoint, "synced", audit.diff(fields_of(endpoint, changed), changed))
        for key, value in changed.items():
            setattr(endpoint, key, value)
        result.updated += 1
    for endpoint in by_stripe_id.values():
        result.missing += 1
        result.messages.append(
            f"Endpoint {endpoint.uuid} ({endpoint.stripe_id}) no longer exists on Stripe;"
            f" remove it with 'flask stripe-hooks delete-endpoint {endpoint.uuid} --keep-remote'."
        )
