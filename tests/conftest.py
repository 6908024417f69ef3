"""Fixtures: every app-level test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click.testing
import pytest
import sqlalchemy as sa
import werkzeug.test
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_stripe_hooks import StripeHooks
from flask_stripe_hooks.testing import create_endpoint, new_secret

sys.path.insert(0, str(Path(__file__).parent))
from pgserver import find_bindir, running  # noqa: E402
from queue_support import processes, redis_server, redis_url  # noqa: E402, F401

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
    with running(bindir) as url:
        yield url


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


# -- figures and the secret-leak guard (issue 6) --------------------------------------------

#: Counters the adversarial tests add to; printed at the end of the run and written to
#: FIGURES_FILE, so docs/security.md quotes measured numbers.
FIGURES: Counter[str] = Counter()
FIGURES_FILE = Path(os.environ.get("STRIPE_HOOKS_FIGURES", "/tmp/flask-stripe-hooks-figures.json"))


def count(name: str, n: int = 1) -> None:
    FIGURES[name] += n


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("security figures")
    for name, value in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{name}: {value}")
    FIGURES_FILE.write_text(json.dumps(dict(sorted(FIGURES.items())), indent=2) + "\n")


#: A Stripe signing secret or secret key with its value (``whsec_••••`` is fine).
SECRET_VALUE = re.compile(r"whsec_[A-Za-z0-9+/=_-]{4,}|[sr]k_(?:test|live)_[A-Za-z0-9_]{4,}")


class LeakGuard:
    """What a test showed the world: test-client responses (body, headers, session),
    CLI runner output and log records. ``leaks`` lists each secret value seen."""

    def __init__(self) -> None:
        self.leaks: list[str] = []
        self.scanned = 0

    def scan(self, where: str, text: Any) -> None:
        self.scanned += 1
        for match in SECRET_VALUE.finditer(str(text or "")):
            self.leaks.append(f"{where}: {match.group()[:12]}...")

    def response(self, client: Any, response: Any) -> None:
        where = f"response to {response.request.method} {response.request.path}"
        if response.mimetype != "text/event-stream":
            self.scan(where, response.get_data(as_text=True))
        self.scan(where + " (headers)", response.headers)
        app = getattr(client, "application", None)
        if isinstance(app, Flask) and hasattr(client, "get_cookie"):
            cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
            serializer = app.session_interface.get_signing_serializer(app)  # type: ignore
            if cookie is not None and serializer is not None:
                try:
                    self.scan(where + " (session)", json.dumps(serializer.loads(cookie.value)))
                except Exception:
                    pass


class _LeakHandler(logging.Handler):
    def __init__(self, guard: LeakGuard) -> None:
        super().__init__(logging.DEBUG)
        self.guard = guard
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.guard.scan(f"log record of {record.name}", self.format(record))
        except Exception:
            self.handleError(record)


@pytest.fixture(autouse=True)
def secret_leak_guard() -> Iterator[LeakGuard]:
    """Fail the test that shows a ``whsec_``/``sk_`` value in a response, the CLI or a log."""
    guard = LeakGuard()
    client_open = werkzeug.test.Client.open
    cli_invoke = click.testing.CliRunner.invoke

    def open_(self: Any, *args: Any, **kwargs: Any) -> Any:
        response = client_open(self, *args, **kwargs)
        guard.response(self, response)
        return response

    def invoke(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = cli_invoke(self, *args, **kwargs)
        guard.scan("CLI output", result.output)
        guard.scan("CLI stderr", getattr(result, "stderr", ""))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            guard.scan("CLI exception", repr(result.exception))
        return result

    handler = _LeakHandler(guard)
    library = logging.getLogger("flask_stripe_hooks")
    level = library.level
    werkzeug.test.Client.open = open_  # type: ignore[method-assign]
    click.testing.CliRunner.invoke = invoke  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)
    library.setLevel(logging.DEBUG)
    try:
        yield guard
    finally:
        werkzeug.test.Client.open = client_open  # type: ignore[method-assign]
        click.testing.CliRunner.invoke = cli_invoke  # type: ignore[method-assign]
        logging.getLogger().removeHandler(handler)
        library.setLevel(level)
    count("tests checked for secret leaks")
    count("outputs scanned for secrets", guard.scanned)
    count("leaks found", len(guard.leaks))
    if guard.leaks:
        pytest.fail("secret leaked: " + "; ".join(sorted(set(guard.leaks))), pytrace=False)


@pytest.fixture(scope="module")
def stripe_server() -> Iterator[Any]:
    """The fake Stripe API, accepting ``sk_test_stub`` and ``sk_live_stub``."""
    from flask_stripe_hooks.testing import FakeStripe

    with FakeStripe(keys={"sk_test_stub", "sk_live_stub"}) as stub:
        yield stub


@pytest.fixture
def stub(stripe_server: Any) -> Any:
    stripe_server.reset()
    return stripe_server


def stored_text(app: Flask, event_id: str) -> str:
    """An event's ``data`` as the database holds it, as text."""
    from flask_stripe_hooks.models import StripeEvent

    db = app.extensions["sqlalchemy"]
    with app.app_context():
        return db.session.execute(  # type: ignore[no-any-return]
            sa.select(sa.cast(StripeEvent.data, sa.Text)).filter_by(id=event_id)
        ).scalar_one()


#: The columns compressed with lz4 by ``compress_with_lz4`` (the migrations call it), by dialect.
LZ4_COLUMNS_BY_DIALECT = {
    "postgresql": [("stripe_hooks_delivery", "body"), ("stripe_hooks_event", "data")],
    "sqlite": [],
}


def lz4_columns(engine: sa.Engine) -> list[tuple[str, str]]:
    """``(table, column)`` of every column compressed with lz4 (none on SQLite)."""
    from flask_stripe_hooks.storage import compress_with_lz4

    with engine.connect() as conn:
        if engine.dialect.name != "postgresql":
            assert compress_with_lz4(conn) is False
            return []
        return [
            tuple(row)
            for row in conn.exec_driver_sql(
                "SELECT attrelid::regclass::text, attname::text FROM pg_attribute"
                " WHERE attcompression = 'l' ORDER BY 1"
            )
        ]
