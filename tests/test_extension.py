"""StripeHooks / init_app: registration, config, CSRF, tables for Flask-Migrate."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_stripe_hooks import StripeHooks
from flask_stripe_hooks.extension import get_state
from flask_stripe_hooks.testing import build_event, create_endpoint, deliver
from flask_wtf import CSRFProtect

from support.helpers import expected_lz4_columns, lz4_columns


def bare_app(tmp_path, **config) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'x.db'}", SECRET_KEY="k", **config
    )
    return app


def test_init_app_without_flask_sqlalchemy_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match=r"db.init_app\(app\)"):
        StripeHooks().init_app(bare_app(tmp_path))


def test_second_registration_is_refused(tmp_path):
    app = bare_app(tmp_path)
    SQLAlchemy(app)
    StripeHooks(app)
    with pytest.raises(RuntimeError, match="already been registered.*use that instance"):
        StripeHooks(app)


def test_explicit_db_and_app_factory(tmp_path):
    db = SQLAlchemy()
    hooks = StripeHooks(db=db)
    app = bare_app(tmp_path)
    db.init_app(app)
    hooks.init_app(app)
    state = get_state(app)
    assert state.db is db and state.hooks is hooks
    assert not hasattr(hooks, "app")
    # The tables are in the app's metadata: db.create_all() and Flask-Migrate see them.
    assert {"stripe_hooks_endpoint", "stripe_hooks_delivery", "stripe_hooks_event"} <= set(
        db.metadata.tables
    )
    assert app.config["STRIPE_HOOKS_TOLERANCE"] == 300
    assert app.config["STRIPE_HOOKS_MAX_BODY"] == 4 * 1024 * 1024
    assert "stripe-hooks" in app.cli.commands


def test_get_state_without_init_app():
    with pytest.raises(RuntimeError, match="forget to call 'init_app'"):
        get_state(Flask(__name__))


def test_one_hooks_object_serves_several_apps(tmp_path):
    hooks = StripeHooks()
    seen = []
    hooks.on("customer.created")(lambda event, **kw: seen.append(event.id))
    for name in ("a", "b"):
        app = bare_app(tmp_path / name)
        (tmp_path / name).mkdir()
        db = SQLAlchemy(app)
        hooks.init_app(app)
        with app.app_context():
            db.create_all()
            endpoint = create_endpoint(db)
        assert (
            deliver(app.test_client(), endpoint, build_event("customer.created")).status_code == 200
        )
        with app.app_context():
            db.engine.dispose()
    assert len(seen) == 2


def test_url_prefix_and_tolerance_from_config(tmp_path):
    app = bare_app(tmp_path, STRIPE_HOOKS_URL_PREFIX="/hooks/", STRIPE_HOOKS_TOLERANCE=10)
    db = SQLAlchemy(app)
    StripeHooks(app)
    with app.app_context():
        db.create_all()
        endpoint = create_endpoint(db)
    client = app.test_client()
    assert deliver(client, endpoint, build_event("customer.created")).status_code == 200
    old = deliver(client, endpoint, build_event("customer.created"), timestamp=0)
    assert old.status_code == 400
    assert client.post(f"/stripe/webhook/{endpoint.uuid}/").status_code == 404
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("csrf_first", [True, False], ids=["csrf-before", "csrf-after"])
def test_webhook_is_exempt_from_csrf(tmp_path, csrf_first):
    app = bare_app(tmp_path)
    db = SQLAlchemy(app)
    csrf = CSRFProtect()
    if csrf_first:
        csrf.init_app(app)
    StripeHooks(app)
    if not csrf_first:
        csrf.init_app(app)

    @app.post("/form")
    def form():
        return "ok"

    with app.app_context():
        db.create_all()
        endpoint = create_endpoint(db)
    client = app.test_client()
    assert client.post("/form").status_code == 400  # CSRF still guards the app's own forms
    assert deliver(client, endpoint, build_event("customer.created")).status_code == 200
    with app.app_context():
        db.engine.dispose()


def test_event_callback_must_be_importable(tmp_path):
    app = bare_app(tmp_path, STRIPE_HOOKS_EVENT_CALLBACK="no.such.module:fn")
    SQLAlchemy(app)
    with pytest.raises(RuntimeError, match="STRIPE_HOOKS_EVENT_CALLBACK"):
        StripeHooks(app)


def test_tables_have_the_documented_names(app, db):
    with app.app_context():
        names = set(sa.inspect(db.engine).get_table_names())
    assert {"stripe_hooks_endpoint", "stripe_hooks_delivery", "stripe_hooks_event"} <= names


def test_lz4_is_an_explicit_call_after_create_all(app):
    """``create_all`` runs no DDL of its own; ``compress_with_lz4`` sets lz4 where it can."""
    from flask_stripe_hooks.models import compress_with_lz4

    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
        assert lz4_columns(engine) == []
        with engine.begin() as conn:
            assert compress_with_lz4(conn) is bool(expected_lz4_columns(engine))
        assert lz4_columns(engine) == expected_lz4_columns(engine)


def test_init_app_loads_no_test_code(tmp_path):
    """``StripeHooks(app)`` (its blueprints, admin and CLI) imports neither the test helpers
    nor the fake Stripe API; ``send-test-event`` loads them when it runs."""
    script = (
        "import sys\n"
        "from flask import Flask\n"
        "from flask_sqlalchemy import SQLAlchemy\n"
        "from flask_stripe_hooks import StripeHooks\n"
        "app = Flask(__name__)\n"
        f"app.config['SQLALCHEMY_DATABASE_URI'] = 'sqlite:///{tmp_path / 'x.db'}'\n"
        "SQLAlchemy(app); StripeHooks(app)\n"
        "print(sorted(m for m in sys.modules if m.startswith('flask_stripe_hooks.testing')))\n"
        "print('stripe-hooks' in app.cli.commands, 'stripe_hooks_admin' in app.blueprints)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.splitlines() == ["[]", "True True"]
