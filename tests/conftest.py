"""Fixtures: every app-level test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_stripe_hooks import StripeHooks
from flask_stripe_hooks.testing import create_endpoint, new_secret

sys.path.insert(0, str(Path(__file__).parent))
from pgserver import PostgresServer, find_bindir, wait_for  # noqa: E402

IN_CI = bool(os.environ.get("CI"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server for the whole run: ``TEST_POSTGRES_URL`` or one we start."""
    url = os.environ.get("TEST_POSTGRES_URL")
    if url:
        yield url
        return
    bindir = find_bindir()
    if bindir is None:
        if IN_CI:
            pytest.fail("PostgreSQL is not installed; .ci/run must install it.")
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql)")
    server = PostgresServer(bindir)
    try:
        url = server.start()
        wait_for(url)
        yield url
    finally:
        server.stop()


def reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    url: str = request.getfixturevalue("postgres_url")
    reset_postgres(url)
    return url


@pytest.fixture
def hooks() -> StripeHooks:
    return StripeHooks()


def make_app(database_url: str, hooks: StripeHooks, **config: Any) -> Flask:
    """An app as a user builds one, with a ``handled`` table for handlers to write to."""
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=database_url,
        SECRET_KEY="test-secret-key",
        TESTING=True,
        **config,
    )
    db = SQLAlchemy()
    db.init_app(app)
    hooks.init_app(app)
    sa.Table(
        "handled",
        db.metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("note", sa.String(255), nullable=False, default=""),
    )
    with app.app_context():
        db.create_all()
    return app


@pytest.fixture
def app_factory(database_url: str, hooks: StripeHooks) -> Iterator[Any]:
    """``app_factory(**config)``: another app on this test's database, disposed after."""
    made: list[Flask] = []

    def factory(url: str | None = None, **config: Any) -> Flask:
        made.append(make_app(url or database_url, hooks, **config))
        return made[-1]

    yield factory
    for app in made:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def app(app_factory: Any) -> Flask:
    return app_factory()  # type: ignore[no-any-return]


@pytest.fixture
def db(app: Flask) -> SQLAlchemy:
    return app.extensions["sqlalchemy"]


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def endpoint(app: Flask, db: SQLAlchemy, secret: str) -> Any:
    with app.app_context():
        return create_endpoint(db, secret=secret)


def handled(app: Flask) -> list[tuple[str, str]]:
    """Rows the test handlers wrote: ``(event_id, note)``."""
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        table = db.metadata.tables["handled"]
        return [
            tuple(r)
            for r in db.session.execute(
                sa.select(table.c.event_id, table.c.note).order_by(table.c.id)
            )
        ]


def record(app: Flask, event_id: str, note: str = "") -> None:
    """What a handler does: write a row in the event's transaction."""
    db = app.extensions["sqlalchemy"]
    db.session.execute(db.metadata.tables["handled"].insert().values(event_id=event_id, note=note))


def rows(app: Flask, model: Any, *where: Any) -> list[Any]:
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        result = list(db.session.execute(sa.select(model).where(*where)).scalars())
        db.session.expunge_all()
        return result
