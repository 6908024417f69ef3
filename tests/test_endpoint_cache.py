"""The endpoint cache (``STRIPE_HOOKS_ENDPOINT_CACHE``): fewer reads, and no stale answer that
matters.

A delivery reuses the endpoint row another delivery read within the cache's lifetime. A new
secret works at once (a rejection re-reads the row), a write in this process (CLI, admin, a
test) empties the cache, a write elsewhere counts within the lifetime, and a secret's expiry
ends the lifetime early.
"""

from __future__ import annotations

import gc
import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_stripe_hooks import StripeHooks
from flask_stripe_hooks.models import WebhookEndpoint
from flask_stripe_hooks.pipeline.endpoint_cache import endpoint_by_uuid
from flask_stripe_hooks.testing import build_event, create_endpoint, deliver, new_secret
from flask_stripe_hooks.utils import utcnow

from support.helpers import handled, record


@pytest.fixture
def recorder(app: Any, hooks: Any) -> None:
    @hooks.on("*")
    def every(event: Any, **kwargs: Any) -> None:
        record(app, event.id, event.type)


def endpoint_reads(app: Any) -> list[str]:
    """SELECTs of the endpoint table, as the app's engine runs them."""
    seen: list[str] = []
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine

    @sa.event.listens_for(engine, "before_cursor_execute")
    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "stripe_hooks_endpoint" in statement:
            seen.append(statement)

    return seen


def elsewhere(database_url: str, endpoint: Any, **values: Any) -> None:
    """Change the endpoint as another process would: its own engine, not this app's session."""
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.update(WebhookEndpoint.__table__)
            .where(WebhookEndpoint.__table__.c.id == endpoint.id)
            .values(**values)
        )
    engine.dispose()


def test_the_endpoint_row_is_read_once(app, client, endpoint, recorder):
    reads = endpoint_reads(app)
    for _ in range(3):
        assert deliver(client, endpoint, build_event("customer.created")).status_code == 200
    assert len(reads) == 1
    assert len(handled(app)) == 3


def test_cache_off_reads_every_time(app_factory, secret):
    app = app_factory(STRIPE_HOOKS_ENDPOINT_CACHE=0)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"], secret=secret)
    reads = endpoint_reads(app)
    client = app.test_client()
    for _ in range(2):
        assert deliver(client, endpoint, build_event("customer.created")).status_code == 200
    assert len(reads) == 2


def test_a_secret_rotated_elsewhere_works_at_once(
    app, client, endpoint, secret, database_url, recorder
):
    assert deliver(client, endpoint, build_event("customer.created")).status_code == 200
    new = new_secret()
    elsewhere(database_url, endpoint, secrets=[{"secret": new, "expires_at": None}])
    fresh = deliver(client, endpoint, build_event("customer.created"), secret=new)
    assert fresh.status_code == 200
    # The row read again replaced the cached one: the removed secret is refused.
    old = deliver(client, endpoint, build_event("customer.created"), secret=secret)
    assert old.status_code == 400
    assert old.get_data(as_text=True).strip() == "signature does not match"
    assert len(handled(app)) == 2


@pytest.mark.parametrize("how", ["orm", "update"])
def test_disabled_in_this_process_is_404_at_once(app, db, client, endpoint, recorder, how):
    assert deliver(client, endpoint, build_event("customer.created")).status_code == 200
    with app.app_context():
        if how == "orm":
            db.session.get(WebhookEndpoint, endpoint.id).status = "disabled"
        else:
            db.session.execute(
                sa.update(WebhookEndpoint)
                .where(WebhookEndpoint.id == endpoint.id)
                .values(status="disabled")
            )
        db.session.commit()
    assert deliver(client, endpoint, build_event("customer.created")).status_code == 404
    assert len(handled(app)) == 1


@pytest.mark.parametrize("how", ["orm", "update"])
def test_a_read_before_the_write_commits_is_not_kept(app, db, endpoint, how):
    """A delivery reading the row while a write in this process is not committed yet sees
    the old row; once the write commits, the next delivery reads the row again."""
    state = app.extensions["stripe_hooks"]
    with app.app_context():
        if how == "orm":
            db.session.get(WebhookEndpoint, endpoint.id).status = "disabled"
            db.session.flush()
        else:
            db.session.execute(
                sa.update(WebhookEndpoint)
                .where(WebhookEndpoint.id == endpoint.id)
                .values(status="disabled")
            )
        with app.app_context():  # a delivery meanwhile, on its own session
            info, _ = endpoint_by_uuid(state, db.session, endpoint.uuid)
            assert info is not None and info.enabled
            db.session.rollback()
        db.session.commit()
    with app.app_context():
        info, cached = endpoint_by_uuid(state, db.session, endpoint.uuid)
        assert not cached and info is not None and not info.enabled


def test_disabled_elsewhere_is_404_within_the_lifetime(
    app, client, endpoint, database_url, recorder, monkeypatch
):
    assert deliver(client, endpoint, build_event("customer.created")).status_code == 200
    elsewhere(database_url, endpoint, status="disabled")
    # Within the lifetime (5 s by default) the cached row still answers...
    assert deliver(client, endpoint, build_event("customer.created")).status_code == 200
    # ...and once it is over, the row is read again.
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + 5.1)
    assert deliver(client, endpoint, build_event("customer.created")).status_code == 404
    assert len(handled(app)) == 2


def test_a_secret_expiry_ends_the_lifetime(app, db, client, endpoint, secret, recorder):
    new = new_secret()
    with app.app_context():
        db.session.get(WebhookEndpoint, endpoint.id).secrets = [
            {"secret": secret, "expires_at": (utcnow() + timedelta(seconds=1)).isoformat()},
            {"secret": new, "expires_at": None},
        ]
        db.session.commit()
    ok = deliver(client, endpoint, build_event("customer.created"), secret=secret)
    assert ok.status_code == 200
    time.sleep(1.1)
    expired = deliver(client, endpoint, build_event("customer.created"), secret=secret)
    assert expired.status_code == 400
    assert deliver(client, endpoint, build_event("customer.created"), secret=new).status_code == 200
    assert len(handled(app)) == 2


def test_every_app_of_a_process_sees_its_endpoint_writes(tmp_path):
    """A process that makes many apps (a test suite with an app per test): a write in each
    one empties its cache, whichever memory its session factory took from a collected one, and
    so does a write through a session factory no app made (the listeners are not per factory)."""
    stale = []
    for n in range(40):
        app = Flask(__name__)
        app.config.update(SQLALCHEMY_DATABASE_URI="sqlite://", SECRET_KEY="x")
        db = SQLAlchemy()
        db.init_app(app)
        StripeHooks(app)
        with app.app_context():
            db.create_all()
            endpoint = create_endpoint(db, secret=new_secret())
            state = app.extensions["stripe_hooks"]
            endpoint_by_uuid(state, db.session, endpoint.uuid)  # cached
            if n % 2:
                db.session.execute(sa.update(WebhookEndpoint).values(status="disabled"))
                db.session.commit()
            else:
                with sa.orm.sessionmaker(db.engine)() as own, own.begin():
                    own.execute(sa.update(WebhookEndpoint).values(status="disabled"))
            info, cached = endpoint_by_uuid(state, db.session, endpoint.uuid)
            if cached or info is None or info.enabled:
                stale.append(n)
            db.session.remove()
            db.engine.dispose()
        if n % 4 == 0:
            gc.collect()  # the factories of earlier apps go, and their memory is reused
    assert stale == []
