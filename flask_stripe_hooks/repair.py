"""Changes made to endpoints from the findings of ``doctor``: ``doctor --fix`` (enable an
endpoint, add the types a handler listens to) and ``upgrade-endpoint`` (a twin pinned to
another API version). Through :mod:`flask_stripe_hooks.endpoints`, so Stripe and the row
change together."""

from __future__ import annotations

from . import endpoints
from .health import Finding, retrieve
from .models import WebhookEndpoint
from .state import get_state


def apply_fix(finding: Finding) -> str:
    """Do what ``finding.action`` says, through :mod:`flask_stripe_hooks.endpoints` (so
    Stripe and the row change together). Returns a line saying what was done."""
    assert finding.action is not None
    what, names = finding.action
    endpoint = endpoints.get_endpoint(finding.endpoint)
    if what == "enable":
        endpoints.update_endpoint(endpoint, enabled=True)
        return f"{finding.endpoint}: enabled on Stripe"
    remote = retrieve(get_state(), endpoint) or {}
    enabled = list(remote.get("enabled_events") or endpoint.enabled_events)
    endpoints.update_endpoint(endpoint, events=[*enabled, *names])
    return f"{finding.endpoint}: now sends {', '.join(names)} too"


def upgrade_endpoint(
    old: WebhookEndpoint, *, api_version: str, base_url: str | None = None
) -> WebhookEndpoint:
    """A new endpoint like ``old`` (events, mode, account, Connect) pinned to
    ``api_version``, at a new URL of this app; ``old`` keeps running until you disable it.
    Events both receive run once (the event id is the gate)."""
    if old.thin:
        raise endpoints.EndpointError("Thin endpoints have no API version to upgrade.")
    path = get_state().webhook_path(old.uuid)
    base = base_url or (old.url[: -len(path)] if old.url.endswith(path) else "")
    if not base:
        raise endpoints.EndpointError(
            f"Endpoint {old.uuid} has no URL of this app recorded; pass --base-url."
        )
    return endpoints.create_endpoint(
        base_url=base,
        events=list(old.enabled_events),
        livemode=old.livemode,
        account=old.account,
        api_version=api_version,
        description=f"{old.description} (API {api_version})".strip(),
        connect=old.connect,
    )
