"""The one place that talks to Stripe's API: clients per account and mode, webhook endpoints.

Keys come from the app's config, named as Stripe users name them::

    STRIPE_TEST_SECRET_KEY = "sk_test_..."     # test mode
    STRIPE_LIVE_SECRET_KEY = "sk_live_..."     # live mode
    STRIPE_SECRET_KEY = "sk_test_..."          # either; its prefix says which mode it serves

and, for more than one Stripe account, named accounts::

    STRIPE_HOOKS_ACCOUNTS = {
        "eu": {
            "test_secret_key": "sk_test_...",
            "live_secret_key": "sk_live_...",
            "secret_key": "...",               # optional: either mode, by its prefix
            "stripe_account": "acct_...",      # optional: a connected account (Stripe-Account)
            "stripe_context": "acct_...",      # optional: with an organization key (sk_org_...),
                                               # the account its requests act in (Stripe-Context)
            "api_version": "2025-...",         # optional: overrides STRIPE_API_VERSION
        },
    }

``STRIPE_API_VERSION`` pins the ``Stripe-Version`` of requests; ``STRIPE_HOOKS_API_BASE``
sends every request to a local fake instead of ``https://api.stripe.com``.

An event reaches Stripe as the account it happened in (:func:`client_as`): a connected
account's event with ``Stripe-Account``, an event that names its ``context`` (thin events,
Organizations) with ``Stripe-Context``; the key is always that of the endpoint's account.

The endpoint functions return Stripe's answers as plain dicts; :func:`create_endpoint`,
:func:`update_endpoint` and :func:`delete_endpoint` take ``thin`` and hide which API serves
the endpoint (v1 webhook endpoints, or v2 event destinations for thin events), answering in
the v1 shape either way. Every failure is a
:class:`StripeAPIError` whose message a person can act on; no traceback,
and never a key in the message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import stripe

from .errors import StripeAPIError
from .utils import mode_name

if TYPE_CHECKING:
    from .state import State

_SECRET = re.compile(r"\b(?:sk|rk|pk)_(?:test|live|org)_[A-Za-z0-9*_]+|\bwhsec_[A-Za-z0-9*_\-]+")
#: The prefix of an organization key: every request made with one needs ``Stripe-Context``.
ORG_KEY_PREFIX = "sk_org_"
_LIMIT = re.compile(r"maximum (?:number )?of (\d+)", re.IGNORECASE)


def scrub(text: str) -> str:
    """``text`` with anything that looks like a Stripe key or signing secret masked."""
    return _SECRET.sub(lambda m: m.group(0).split("_", 1)[0] + "_…", text)


def _key_mode(key: str) -> bool | None:
    """True for a live key, False for a test key, None when the prefix says neither."""
    if key.startswith(("sk_live_", "rk_live_")):
        return True
    if key.startswith(("sk_test_", "rk_test_")):
        return False
    return None


def _account_config(state: State, account: str) -> dict[str, Any]:
    accounts = state.accounts
    if account not in accounts:
        known = ", ".join(repr(name) for name in accounts) or "none"
        raise StripeAPIError(
            f"No account {account!r} in STRIPE_HOOKS_ACCOUNTS (configured: {known}).", "account"
        )
    settings = accounts[account]
    if not isinstance(settings, dict):
        raise StripeAPIError(
            f"STRIPE_HOOKS_ACCOUNTS[{account!r}] must be a dict with 'test_secret_key' and/or"
            " 'live_secret_key'.",
            "account",
        )
    return settings


def key_source(state: State, *, account: str = "", livemode: bool = False) -> tuple[str, str]:
    """``(key, where it is configured)`` for an account and mode.

    Raises :class:`StripeAPIError` naming the setting to fill when there is none.
    """
    mode = mode_name(livemode)
    if account:
        settings = _account_config(state, account)
        prefix = f"STRIPE_HOOKS_ACCOUNTS[{account!r}]"
        hint = f"{prefix}[{mode + '_secret_key'!r}]"
        own, shared = settings.get(f"{mode}_secret_key"), settings.get("secret_key")
        shared_source = f"{prefix}['secret_key']"
    else:
        hint = f"STRIPE_{mode.upper()}_SECRET_KEY"
        own, shared = getattr(state, f"{mode}_secret_key"), state.secret_key
        shared_source = "STRIPE_SECRET_KEY"
    if own:
        key = str(own).strip()
        key_mode = _key_mode(key)
        if key_mode is not None and key_mode is not livemode:
            raise StripeAPIError(
                f"{hint} holds a {mode_name(key_mode)}-mode key; put a {mode}-mode key"
                f" ({'sk_live_' if livemode else 'sk_test_'}...) there."
            )
        return key, hint
    if shared and _key_mode(str(shared).strip()) is livemode:
        return str(shared).strip(), shared_source
    where = f" of account {account!r}" if account else ""
    raise StripeAPIError(f"No {mode} secret key{where} is configured: set {hint}.")


def client_for(state: State, *, account: str = "", livemode: bool = False) -> stripe.StripeClient:
    """A ``stripe.StripeClient`` for this account and mode, built once per app."""
    cache_key = (account, livemode)
    client = state.clients.get(cache_key)
    if client is not None:
        return client  # type: ignore[no-any-return]
    key, _ = key_source(state, account=account, livemode=livemode)
    settings = _account_config(state, account) if account else {}
    options = _options(state, account)
    for name in ("stripe_account", "stripe_context"):
        if settings.get(name):
            options[name] = settings[name]
    client = stripe.StripeClient(key, **options)
    state.clients[cache_key] = client
    return client


def _options(state: State, account: str) -> dict[str, Any]:
    options: dict[str, Any] = {"stripe_version": api_version(state, account)}
    if state.api_base:
        options["base_addresses"] = {"api": str(state.api_base).rstrip("/")}
    return options


def client_as(
    state: State,
    *,
    account: str = "",
    livemode: bool = False,
    connected: str = "",
    context: str = "",
) -> stripe.StripeClient:
    """The client of ``account``'s key (the platform's) acting in the account an event
    happened in: every request it makes carries that account.

    ``connected``: a connected account (``acct_...``, a Connect event's ``account``), sent as
    ``Stripe-Account``. ``context``: a ``Stripe-Context`` (a thin event's ``context``, an
    Organization's event's), sent when there is no ``connected`` account. An organization
    key (``sk_org_...``) needs ``Stripe-Context`` on every request: it gets ``context``, or
    else the account's ``stripe_context`` followed by ``/`` and ``connected``.

    With neither, the account's own client (:func:`client_for`). Building one costs
    microseconds; it shares the account client's connections.
    """
    base = client_for(state, account=account, livemode=livemode)
    if not connected and not context:
        return base
    key, source = key_source(state, account=account, livemode=livemode)
    options = _options(state, account)
    if key.startswith(ORG_KEY_PREFIX):
        if not context:
            parent = (_account_config(state, account) if account else {}).get("stripe_context")
            if not parent:
                raise StripeAPIError(
                    f"{source} holds an organization key, which needs Stripe-Context: the event"
                    f" names no context, so set {_setting(account, 'stripe_context')} to the"
                    f" platform's account id (requests for {connected} then carry"
                    f" acct_.../{connected})."
                )
            context = f"{parent}/{connected}"
        options["stripe_context"] = context
    elif connected:
        options["stripe_account"] = connected
    else:
        options["stripe_context"] = context
    # One connection pool per account, as stripe-python's own StripeClient.with_stripe_context.
    return stripe.StripeClient(key, http_client=base._requestor._client, **options)


def _setting(account: str, name: str) -> str:
    return f"STRIPE_HOOKS_ACCOUNTS[{account or 'NAME'!r}][{name!r}]"


def api_version(state: State, account: str = "") -> str:
    """The API version of this app's requests for ``account``: the account's ``api_version``,
    else ``STRIPE_API_VERSION``, else the one stripe-python is pinned to."""
    settings = _account_config(state, account) if account else {}
    version = settings.get("api_version") or state.api_version
    return str(version or stripe.api_version)


def api_base(state: State) -> str:
    return str(state.api_base or stripe.DEFAULT_API_BASE).rstrip("/")


def _field(param: str | None) -> str | None:
    """``enabled_events[0]`` → ``enabled_events``: the form field behind a Stripe param."""
    return param.split("[", 1)[0] if param else None


def translate(
    exc: stripe.StripeError,
    state: State,
    *,
    account: str = "",
    livemode: bool = False,
    call: str = "",
) -> StripeAPIError:
    """A :class:`StripeAPIError` saying what to do about a stripe-python error; ``call``
    (``"POST /v1/webhook_endpoints"``) names the request in a 404 that is not Stripe's."""
    mode = mode_name(livemode)
    whose = f"{mode} secret key" + (f" of account {account!r}" if account else "")
    status = exc.http_status
    raw = scrub((exc.user_message or "").strip())
    if isinstance(exc, stripe.AuthenticationError):
        try:
            _, source = key_source(state, account=account, livemode=livemode)
        except StripeAPIError:
            source = "the configuration"
        return StripeAPIError(
            f"Stripe rejected the {whose}; check {source} (Dashboard → Developers → API keys).",
            status=status,
        )
    if isinstance(exc, stripe.PermissionError):
        return StripeAPIError(
            f"The {whose} may not manage webhook endpoints; use a secret key, or give the"
            " restricted key write access to Webhook Endpoints.",
            status=status,
        )
    if isinstance(exc, stripe.RateLimitError):
        return StripeAPIError(
            "Stripe is limiting the rate of requests; try again in a minute.", status=status
        )
    if isinstance(exc, stripe.APIConnectionError):
        return StripeAPIError(
            f"Could not reach the Stripe API at {api_base(state)}; check the network"
            " (or STRIPE_HOOKS_API_BASE)."
        )
    if status == 404 and not is_missing(exc):  # no such API, not no such object
        return StripeAPIError(
            f"{api_base(state)} answered 404 Not Found to {call or 'a request'}"
            + (f" ({raw})" if raw else "")
            + "; STRIPE_HOOKS_API_BASE may point at a server without this API.",
            status=status,
        )
    if isinstance(exc, stripe.InvalidRequestError):
        limit = _LIMIT.search(raw)
        if limit and "endpoint" in raw.lower():
            return StripeAPIError(
                f"Stripe allows at most {limit.group(1)} endpoints per account in {mode} mode;"
                " delete one you no longer use ('flask stripe-hooks delete-endpoint' or the"
                " Dashboard) and try again.",
                status=status,
            )
        field = _field(getattr(exc, "param", None))
        message = raw or "Stripe refused the request."
        if field and field not in message:
            message = f"{message} ({field})"
        return StripeAPIError(message, field, status=status)
    if isinstance(exc, stripe.APIError):
        return StripeAPIError(
            "Stripe had an internal error; try again in a moment." + (f" ({raw})" if raw else ""),
            status=status,
        )
    return StripeAPIError(raw or f"Stripe refused the request ({type(exc).__name__}).", None)


@contextmanager
def _calling(state: State, account: str, livemode: bool, call: str) -> Iterator[None]:
    try:
        yield
    except stripe.StripeError as exc:
        raise translate(exc, state, account=account, livemode=livemode, call=call) from None


#: The codes of Stripe's "no such object" (v1, v2); a 404 without one is a path with no API.
_MISSING = ("resource_missing", "not_found")


def is_missing(exc: stripe.StripeError) -> bool:
    """Stripe answered "no such object" (a webhook endpoint, an event destination)."""
    return isinstance(exc, stripe.InvalidRequestError) and exc.code in _MISSING


# -- webhook endpoints ---------------------------------------------------------------------


def create_webhook_endpoint(
    state: State, params: dict[str, Any], *, account: str = "", livemode: bool = False
) -> dict[str, Any]:
    """``POST /v1/webhook_endpoints``; the answer carries the one-time ``secret``."""
    client = client_for(state, account=account, livemode=livemode)
    with _calling(state, account, livemode, "POST /v1/webhook_endpoints"):
        return client.v1.webhook_endpoints.create(params).to_dict()  # type: ignore[arg-type]


def update_webhook_endpoint(
    state: State,
    stripe_id: str,
    params: dict[str, Any],
    *,
    account: str = "",
    livemode: bool = False,
) -> dict[str, Any]:
    """``POST /v1/webhook_endpoints/{id}``."""
    client = client_for(state, account=account, livemode=livemode)
    with _calling(state, account, livemode, f"POST /v1/webhook_endpoints/{stripe_id}"):
        endpoint = client.v1.webhook_endpoints.update(stripe_id, params)  # type: ignore[arg-type]
        return endpoint.to_dict()


def list_webhook_endpoints(
    state: State, *, account: str = "", livemode: bool = False
) -> list[dict[str, Any]]:
    """Every endpoint of the account in this mode (``GET /v1/webhook_endpoints``, all pages)."""
    client = client_for(state, account=account, livemode=livemode)
    with _calling(state, account, livemode, "GET /v1/webhook_endpoints"):
        page = client.v1.webhook_endpoints.list({"limit": 100})
        return [endpoint.to_dict() for endpoint in page.auto_paging_iter()]


# -- v2 event destinations (thin events) -----------------------------------------------------


def create_event_destination(
    state: State, params: dict[str, Any], *, account: str = "", livemode: bool = False
) -> dict[str, Any]:
    """``POST /v2/core/event_destinations`` (a JSON body); with ``include`` naming
    ``webhook_endpoint.signing_secret`` the answer carries the one-time secret."""
    client = client_for(state, account=account, livemode=livemode)
    with _calling(state, account, livemode, "POST /v2/core/event_destinations"):
        return client.v2.core.event_destinations.create(params).to_dict()  # type: ignore[arg-type]


def update_event_destination(
    state: State,
    stripe_id: str,
    params: dict[str, Any],
    *,
    account: str = "",
    livemode: bool = False,
) -> dict[str, Any]:
    """``POST /v2/core/event_destinations/{id}``; ``params["disabled"]`` (a bool) becomes a
    call to ``/enable`` or ``/disable``, as the v2 API has no status parameter."""
    client = client_for(state, account=account, livemode=livemode)
    service = client.v2.core.event_destinations
    params = dict(params)
    disabled = params.pop("disabled", None)
    answer: dict[str, Any] = {}
    with _calling(state, account, livemode, f"POST /v2/core/event_destinations/{stripe_id}"):
        if params:
            answer = service.update(stripe_id, params).to_dict()  # type: ignore[arg-type]
        if disabled is not None:
            toggle = service.disable if disabled else service.enable
            answer = toggle(stripe_id).to_dict()
    return answer


def list_thin_destinations(
    state: State, *, account: str = "", livemode: bool = False
) -> list[dict[str, Any]]:
    """Every event destination of the account in this mode that posts thin events to a
    webhook URL (``GET /v2/core/event_destinations``, all pages), v1-shaped (see
    :func:`_as_webhook_endpoint`) with its ``description`` and ``metadata``. Destinations of
    other types (Amazon EventBridge, Azure Event Grid) and snapshot ones are left out."""
    client = client_for(state, account=account, livemode=livemode)
    params = {"include": ["webhook_endpoint.url"], "limit": 100}
    with _calling(state, account, livemode, "GET /v2/core/event_destinations"):
        page = client.v2.core.event_destinations.list(params)  # type: ignore[arg-type]
        found = [d.to_dict() for d in page.auto_paging_iter()]
    return [
        {
            **_as_webhook_endpoint(d),
            "description": d.get("description") or "",
            "metadata": d.get("metadata") or {},
        }
        for d in found
        if d.get("type") == "webhook_endpoint" and d.get("event_payload") == "thin"
    ]


# -- either: the endpoint functions endpoints.py calls ---------------------------------------


def create_endpoint(
    state: State,
    params: dict[str, Any],
    *,
    thin: bool,
    name: str = "flask-stripe-hooks",
    account: str = "",
    livemode: bool = False,
) -> dict[str, Any]:
    """Create a webhook endpoint from v1 ``params`` (``url``, ``enabled_events``,
    ``api_version``, ``metadata``, ``description``, ``connect``); with ``thin``, a v2 event
    destination named ``name`` from the same params. The answer is v1-shaped: ``id``,
    ``secret`` (the one-time signing secret), ``url``, ``enabled_events``, ``status``,
    ``api_version``."""
    if not thin:
        return create_webhook_endpoint(state, params, account=account, livemode=livemode)
    body: dict[str, Any] = {
        "name": name,
        "type": "webhook_endpoint",
        "event_payload": "thin",
        "enabled_events": params["enabled_events"],
        "webhook_endpoint": {"url": params["url"]},
        "include": ["webhook_endpoint.signing_secret", "webhook_endpoint.url"],
        "metadata": params.get("metadata") or {},
    }
    if params.get("description"):
        body["description"] = params["description"]
    if params.get("connect"):
        body["events_from"] = ["@accounts"]  # the connected accounts' events
    remote = create_event_destination(state, body, account=account, livemode=livemode)
    secret = (remote.get("webhook_endpoint") or {}).get("signing_secret")
    return {**_as_webhook_endpoint(remote), "secret": secret}


def _as_webhook_endpoint(destination: dict[str, Any]) -> dict[str, Any]:
    """A v2 event destination in the shape of a v1 webhook endpoint."""
    return {
        "id": destination.get("id"),
        "url": (destination.get("webhook_endpoint") or {}).get("url"),
        "enabled_events": destination.get("enabled_events") or [],
        "status": destination.get("status"),
        "api_version": None,  # thin events carry no API version
        "connect": "@accounts" in (destination.get("events_from") or []),
    }


def _service(client: stripe.StripeClient, thin: bool) -> tuple[Any, str]:
    """The service of an endpoint's API, and its path."""
    if thin:
        return client.v2.core.event_destinations, "/v2/core/event_destinations"
    return client.v1.webhook_endpoints, "/v1/webhook_endpoints"


def retrieve_endpoint(
    state: State, stripe_id: str, *, thin: bool, account: str = "", livemode: bool = False
) -> dict[str, Any] | None:
    """The endpoint as Stripe has it, v1-shaped (``status``, ``url``, ``api_version``,
    ``enabled_events``; ``connect`` for a thin one); None when Stripe has no such one."""
    service, path = _service(client_for(state, account=account, livemode=livemode), thin)
    params = {"include": ["webhook_endpoint.url"]} if thin else None
    try:
        remote = service.retrieve(stripe_id, params).to_dict()
    except stripe.StripeError as exc:
        if is_missing(exc):
            return None
        call = f"GET {path}/{stripe_id}"
        raise translate(exc, state, account=account, livemode=livemode, call=call) from None
    return _as_webhook_endpoint(remote) if thin else remote


def update_endpoint(
    state: State,
    stripe_id: str,
    params: dict[str, Any],
    *,
    thin: bool,
    account: str = "",
    livemode: bool = False,
) -> dict[str, Any]:
    """Change an endpoint with v1 ``params`` (``enabled_events``, ``description``,
    ``disabled``), on whichever API serves it."""
    update = update_event_destination if thin else update_webhook_endpoint
    return update(state, stripe_id, params, account=account, livemode=livemode)


def delete_endpoint(
    state: State, stripe_id: str, *, thin: bool, account: str = "", livemode: bool = False
) -> bool:
    """Delete an endpoint on whichever API serves it; False when Stripe has no such one."""
    service, path = _service(client_for(state, account=account, livemode=livemode), thin)
    try:
        service.delete(stripe_id)
    except stripe.StripeError as exc:
        if is_missing(exc):
            return False
        call = f"DELETE {path}/{stripe_id}"
        raise translate(exc, state, account=account, livemode=livemode, call=call) from None
    return True
