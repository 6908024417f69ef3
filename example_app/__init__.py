"""An example app: Stripe webhooks into SQLite (or DATABASE_URL), handled in handlers.py.

flask --app example_app db upgrade
flask --app example_app run
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_stripe_hooks import StripeHooks
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
hooks = StripeHooks()
migrate = Migrate()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("SECRET_KEY", "dev-only-change-me"),
        SQLALCHEMY_DATABASE_URI=os.environ.get(
            "DATABASE_URL", "sqlite:///" + os.path.join(app.instance_path, "example.db")
        ),
        STRIPE_TEST_SECRET_KEY=os.environ.get("STRIPE_TEST_SECRET_KEY"),
        STRIPE_LIVE_SECRET_KEY=os.environ.get("STRIPE_LIVE_SECRET_KEY"),
        STRIPE_HOOKS_API_BASE=os.environ.get("STRIPE_HOOKS_API_BASE"),
    )
    app.config.from_prefixed_env("EXAMPLE")  # e.g. EXAMPLE_STRIPE_HOOKS_TOLERANCE=600
    if config:
        app.config.update(config)

    broker = app.config.get("CELERY_BROKER_URL")  # EXAMPLE_CELERY_BROKER_URL: queue mode
    if broker:  # see celery_worker.py
        app.config.setdefault("CELERY", {"broker_url": broker, "worker_prefetch_multiplier": 1})
        app.config.setdefault("STRIPE_HOOKS_EVENT_CALLBACK", "flask_stripe_hooks.celery.enqueue")

    if app.config.get("ADMIN_PASSWORD"):  # EXAMPLE_ADMIN_PASSWORD: log in at /login
        app.config.setdefault("STRIPE_HOOKS_ADMIN_AUTH", "example_app.auth.admin_required")

    db.init_app(app)
    hooks.init_app(app)
    if broker:
        from flask_stripe_hooks.celery import make_celery

        make_celery(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(__file__), "migrations"))

    # Importing the modules registers the models and the handlers.
    from . import handlers, models  # noqa: F401
    from .auth import bp as auth_bp
    from .views import bp

    app.register_blueprint(bp)
    app.register_blueprint(auth_bp)
    return app
