"""What the extension keeps for one app, in ``app.extensions["stripe_hooks"]``.

A leaf: every part that needs the app's settings (the pipeline, endpoints, Stripe's API, the
faces) reads them from here, and nothing here imports those parts.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app


@dataclass
class State:
    """Everything the extension keeps for one app, read once by ``init_app``."""

    #: The :class:`~flask_stripe_hooks.StripeHooks` object (its handler registry).
    hooks: Any
    db: Any
    tolerance: int
    max_body: int
    url_prefix: str
    event_callback: Callable[[str], Any] | None
    #: ``STRIPE_HOOKS_ADMIN_URL_PREFIX``: where the admin is mounted; ``None``: no admin.
    admin_url_prefix: str | None = None
    #: ``STRIPE_HOOKS_ADMIN_AUTH``, resolved once: ``auth() -> bool | str | Response``.
    admin_auth: Callable[[], Any] | None = None
    #: ``STRIPE_SECRET_KEY``, ``STRIPE_TEST_SECRET_KEY``, ``STRIPE_LIVE_SECRET_KEY``
    #: (decrypted when given as ``"fernet:..."``).
    secret_key: str | None = field(default=None, repr=False)
    test_secret_key: str | None = field(default=None, repr=False)
    live_secret_key: str | None = field(default=None, repr=False)
    #: ``STRIPE_HOOKS_ACCOUNTS``: account name -> its keys and options (keys decrypted).
    accounts: dict[str, Any] = field(default_factory=dict, repr=False)
    #: ``STRIPE_API_VERSION``; ``None``: the version stripe-python is pinned to.
    api_version: str | None = None
    #: ``STRIPE_HOOKS_API_BASE``: another address for Stripe's API (a local fake).
    api_base: str | None = None
    #: ``STRIPE_HOOKS_TRACING``: a span per delivery and per run of a stored event.
    tracing: bool = False
    #: ``stripe.StripeClient`` per (account, livemode), built on first use (stripe_api.py).
    clients: dict[tuple[str, bool], Any] = field(default_factory=dict, repr=False)
    #: Seconds an endpoint row read by a delivery is reused (pipeline/endpoint_cache.py); 0: never.
    endpoint_cache: float = 0.0
    #: uuid -> (EndpointInfo, monotonic deadline, write generation): that cache.
    endpoints: dict[Any, tuple[Any, float, int]] = field(default_factory=dict, repr=False)
    #: Attempts (failures and retries) after which an event is ``dead``.
    max_attempts: int = 16
    #: The longest wait, in seconds, before a ``Retry`` of an event is due.
    retry_max: float = 3600.0
    #: ``STRIPE_HOOKS_PAUSED``: every endpoint of this app is paused.
    paused: bool = False
    #: ``STRIPE_HOOKS_ALLOWED_IPS``, parsed (pipeline/guard.py): ``check(remote_addr) -> bool``;
    #: None: off.
    allowed_ips: Callable[[str | None], bool] | None = None
    #: ``STRIPE_HOOKS_MAX_REJECTED_PER_MINUTE`` and ``..._BYTES_PER_MINUTE``
    #: (``guard.RejectedLimit``); None: no limit.
    rejected_limit: Any = None
    #: ``STRIPE_HOOKS_REJECTED_PREFIX``: bytes of a rejected delivery's body (and characters
    #: of its headers) kept; None: all.
    rejected_prefix: int | None = 4096
    #: The receiving path's warnings, each logged at most once a minute (``guard.Notices``):
    #: rejected deliveries per endpoint, a database without this extension's tables.
    notices: Any = field(default=None, repr=False)
    #: ``STRIPE_HOOKS_STORE_BODY``: the delivery outcomes whose body is kept; None: all.
    keep_body: frozenset[str] | None = None
    #: ``STRIPE_HOOKS_REDACT``: ``redact(data) -> data`` stored for each event; None: off.
    redact: Callable[[Any], Any] | None = None
    #: ``STRIPE_HOOKS_ENCRYPTION_KEY`` as a ``MultiFernet`` (crypto.py), or ``None``.
    fernet: Any = field(default=None, repr=False)

    @property
    def registry(self) -> Any:
        """The handler registry (:class:`~flask_stripe_hooks.pipeline.Registry`)."""
        return self.hooks.registry

    def webhook_path(self, endpoint_uuid: uuid.UUID | str) -> str:
        """The path Stripe posts to for an endpoint: ``{prefix}/webhook/<uuid>/``."""
        return f"{self.url_prefix}/webhook/{endpoint_uuid}/"


def get_state(app: Flask | None = None) -> State:
    """The extension's state for ``app`` (default: ``current_app``)."""
    app = app or current_app
    try:
        return app.extensions["stripe_hooks"]  # type: ignore[no-any-return]
    except KeyError:
        raise RuntimeError(
            "flask-stripe-hooks is not registered on this app. Did you forget to call 'init_app'?"
        ) from None
