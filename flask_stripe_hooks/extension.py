"""The Flask extension object: configuration, blueprints, CLI, per-app state."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask

from . import crypto, pipeline
from .models import attach_tables
from .pipeline import HandlerSignal, Registry
from .state import State, get_state
from .utils import parse_duration, resolve_setting

if TYPE_CHECKING:
    from .outcomes import Result

__all__ = ["DEFAULTS", "State", "StripeHooks", "get_state"]

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("flask_stripe_hooks")

#: Logged by ``init_app`` when the admin is on and the app has no ``SECRET_KEY``.
NO_SECRET_KEY = (
    "The Stripe webhooks admin needs the app's SECRET_KEY (its forms carry CSRF tokens),"
    " and it is not set: set app.config['SECRET_KEY'] to a long random value kept out of the"
    " code (from an environment variable), or turn the admin off with"
    " STRIPE_HOOKS_ADMIN_URL_PREFIX = None."
)

#: Every configuration key with its default; ``init_app`` reads them once.
DEFAULTS: dict[str, Any] = {
    "STRIPE_HOOKS_URL_PREFIX": "/stripe",
    "STRIPE_HOOKS_ADMIN_URL_PREFIX": "/stripe-hooks/admin",
    "STRIPE_HOOKS_ADMIN_AUTH": None,
    "STRIPE_HOOKS_TOLERANCE": 300,
    "STRIPE_HOOKS_MAX_BODY": 4 * 1024 * 1024,
    "STRIPE_HOOKS_ENDPOINT_CACHE": 5,
    "STRIPE_HOOKS_EVENT_CALLBACK": None,
    "STRIPE_HOOKS_MAX_ATTEMPTS": 16,
    "STRIPE_HOOKS_RETRY_MAX": "1h",
    "STRIPE_HOOKS_PAUSED": False,
    "STRIPE_HOOKS_ALLOWED_IPS": None,
    "STRIPE_HOOKS_MAX_REJECTED_PER_MINUTE": 60,
    "STRIPE_HOOKS_MAX_REJECTED_BYTES_PER_MINUTE": 256 * 1024,
    "STRIPE_HOOKS_REJECTED_PREFIX": 4096,
    "STRIPE_HOOKS_STORE_BODY": None,
    "STRIPE_HOOKS_REDACT": None,
    "STRIPE_HOOKS_ENCRYPTION_KEY": None,
    "STRIPE_HOOKS_API_BASE": None,
    "STRIPE_HOOKS_METRICS": False,
    "STRIPE_HOOKS_TRACING": False,
    "STRIPE_HOOKS_ACCOUNTS": {},
    "STRIPE_SECRET_KEY": None,
    "STRIPE_TEST_SECRET_KEY": None,
    "STRIPE_LIVE_SECRET_KEY": None,
    "STRIPE_API_VERSION": None,
}


class StripeHooks:
    """Receive Stripe webhooks in a Flask app.

    ::

        hooks = StripeHooks()

        def create_app():
            app = Flask(__name__)
            db.init_app(app)
            hooks.init_app(app)   # or init_app(app, db=db)
            return app

        @hooks.on("customer.subscription.trial_will_end")
        def trial_ending(event, **kwargs): ...

    Handlers belong to this object, not to an app: one set serves every app it is
    registered on.
    """

    def __init__(self, app: Flask | None = None, *, db: Any = None) -> None:
        self._db = db
        self.registry = Registry()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, db: Any = None) -> None:
        """Register the extension on ``app``: config defaults, the webhook and admin
        blueprints, the ``flask stripe-hooks`` commands, the app's state.

        ``db`` is the app's Flask-SQLAlchemy object; without it (here or in the constructor)
        the one in ``app.extensions`` is used, so call ``db.init_app(app)`` first.
        """
        if "stripe_hooks" in app.extensions:
            raise RuntimeError(
                "A 'StripeHooks' instance has already been registered on this Flask app."
                " Import and use that instance instead."
            )
        db = db or self._db or app.extensions.get("sqlalchemy")
        if db is None:
            raise RuntimeError(
                "flask-stripe-hooks stores events with Flask-SQLAlchemy, and this app has"
                " none. Call 'db.init_app(app)' before 'hooks.init_app(app)', or pass it:"
                " 'hooks.init_app(app, db=db)'."
            )
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value.copy() if isinstance(value, dict) else value)
        config = {key: app.config[key] for key in DEFAULTS}
        fernet = crypto.load_key(config["STRIPE_HOOKS_ENCRYPTION_KEY"])
        crypto.open_api_keys(config, fernet)
        prefix = _prefix(config["STRIPE_HOOKS_URL_PREFIX"])
        admin_prefix = config["STRIPE_HOOKS_ADMIN_URL_PREFIX"]
        redact = resolve_setting(config["STRIPE_HOOKS_REDACT"], "STRIPE_HOOKS_REDACT")
        state = State(
            hooks=self,
            db=db,
            tolerance=int(config["STRIPE_HOOKS_TOLERANCE"]),
            max_body=int(config["STRIPE_HOOKS_MAX_BODY"]),
            url_prefix=prefix,
            event_callback=resolve_setting(
                config["STRIPE_HOOKS_EVENT_CALLBACK"], "STRIPE_HOOKS_EVENT_CALLBACK"
            ),
            admin_url_prefix=None if admin_prefix is None else _prefix(admin_prefix),
            admin_auth=resolve_setting(
                config["STRIPE_HOOKS_ADMIN_AUTH"], "STRIPE_HOOKS_ADMIN_AUTH"
            ),
            secret_key=config["STRIPE_SECRET_KEY"],
            test_secret_key=config["STRIPE_TEST_SECRET_KEY"],
            live_secret_key=config["STRIPE_LIVE_SECRET_KEY"],
            accounts=config["STRIPE_HOOKS_ACCOUNTS"] or {},
            api_version=config["STRIPE_API_VERSION"],
            api_base=config["STRIPE_HOOKS_API_BASE"],
            tracing=bool(config["STRIPE_HOOKS_TRACING"]),
            endpoint_cache=float(config["STRIPE_HOOKS_ENDPOINT_CACHE"] or 0),
            max_attempts=_at_least_one(config, "STRIPE_HOOKS_MAX_ATTEMPTS"),
            retry_max=parse_duration(str(config["STRIPE_HOOKS_RETRY_MAX"])).total_seconds(),
            paused=bool(config["STRIPE_HOOKS_PAUSED"]),
            redact=redact,
            fernet=fernet,
            **pipeline.configure(config, app.instance_path, redact),
        )
        app.extensions["stripe_hooks"] = state
        attach_tables(db.metadata)

        from .cli import cli
        from .webhook import create_blueprint

        webhook_bp = create_blueprint(state)
        app.register_blueprint(webhook_bp)
        _exempt_from_csrf(app, webhook_bp)
        if state.admin_url_prefix is not None:
            from .admin import create_blueprint as create_admin

            app.register_blueprint(create_admin(state))
            if not app.config.get("SECRET_KEY"):
                log.warning(NO_SECRET_KEY)
        app.cli.add_command(cli, "stripe-hooks")
        if config["STRIPE_HOOKS_METRICS"]:
            from .metrics import init_metrics

            init_metrics(app)

    # -- handlers ---------------------------------------------------------------------

    def on(self, *event_types: str, latest_only: bool = False) -> Callable[[F], F]:
        """Decorator: run the function for events of these types, or below them.

        ``on("customer")`` matches ``customer.created`` and
        ``customer.subscription.updated`` but not ``customer_cash_balance_transaction``;
        ``on("*")`` matches every event. The function is called as
        ``handler(event, **kwargs)``, inside the transaction that stores the event.

        ``latest_only=True``: skip events about an object for which an event with a strictly
        later ``created`` was processed already (Stripe does not deliver in order); the
        ``stale-skipped`` signal says so.
        """
        return self.registry.on(*event_types, latest_only=latest_only)

    def use_notification_handler(self, handler: Any) -> Any:
        """Run a stripe-python ``StripeEventNotificationHandler`` for thin events: its
        callbacks (and fallback, and ``pre_handle``) get each thin event this extension has
        verified, stored and not run before, inside the transaction that stores it, as
        ``@hooks.on`` handlers do. Its own webhook secret is not used: the endpoint's
        secrets are. Returns the handler. An async handler raises ``TypeError``."""
        self.registry.on("*")(pipeline.NotificationHandler(handler))
        return handler

    def signal(self, name: str) -> HandlerSignal:
        """The blinker signal behind ``on(name)``, for direct ``connect`` / ``disconnect``."""
        return self.registry.signal(name)

    @staticmethod
    def on_commit(fn: Callable[[], Any]) -> Callable[[], Any]:
        """Run ``fn()`` once the event being processed is committed; never on rollback."""
        return pipeline.on_commit(fn)

    # -- stored events ------------------------------------------------------------------

    def process_stored(self, event_id: str, *, force: bool = False) -> Result:
        """Run the handlers of a stored event in the current app: a queue worker's entry point.

        The event row is locked while its handlers run, in one transaction with their
        writes. ``result.outcome`` says what happened: ``processed``; ``duplicate`` (it
        was processed before; ``force=True`` runs it again); ``failed`` (a handler raised,
        recorded on the event: retry later); ``busy`` (another worker holds it: retry
        later); ``unavailable`` (the database could not be reached: retry later);
        ``missing`` (no such event stored); ``paused``, ``retrying``, ``ignored``, ``dead``
        as :class:`~flask_stripe_hooks.outcomes.Result` says. ``result.ok`` is true when the
        event needs nothing more from the caller: processed, a duplicate, queued, paused,
        ignored or dead.
        """
        return pipeline.process_stored(get_state(), event_id, force=force)


def _prefix(value: str) -> str:
    """A URL prefix as Flask wants it: ``""`` for the root, else ``/name`` without a slash
    at the end."""
    prefix = "/" + str(value).strip("/")
    return "" if prefix == "/" else prefix


def _at_least_one(config: dict[str, Any], key: str) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RuntimeError(f"{key} must be a whole number of 1 or more, not {value!r}.")
    return value


def _exempt_from_csrf(app: Flask, blueprint: Any) -> None:
    """Stripe cannot send a CSRF token: exempt the webhook blueprint from CSRFProtect,
    whether it is set up before this extension or after it."""
    csrf = app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(blueprint)
        return
    done = False

    # Registered before CSRFProtect's own before_request, so it runs first.
    @app.before_request
    def _stripe_hooks_csrf_exempt() -> None:
        nonlocal done
        if not done:
            done = True
            late = app.extensions.get("csrf")
            if late is not None:
                late.exempt(blueprint)
