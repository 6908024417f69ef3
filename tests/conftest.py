"""Fixtures: every app-level test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import logging
import os
import weakref
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

from support.helpers import (  # noqa: E402
    FIGURES,
    FIGURES_FILE,
    LeakGuard,
    LeakHandler,
    count,
    make_app,
    missing,
    reset_postgres,
)
from support.pgserver import INSTALL_HINT, find_bindir, running  # noqa: E402
from support.queue_support import marks, processes, redis_server, redis_url  # noqa: E402, F401

#: Where the run's PostgreSQL comes from, for the summary.
POSTGRES_FROM: list[str] = []


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server for the whole run: ``TEST_POSTGRES_URL`` or one we start."""
    url = os.environ.get("TEST_POSTGRES_URL")
    if url:
        POSTGRES_FROM.append("TEST_POSTGRES_URL")
        yield url
        return
    bindir = find_bindir()
    if bindir is None:
        missing("PostgreSQL", INSTALL_HINT)
    POSTGRES_FROM.append(bindir)
    with running(bindir) as url:
        yield url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test on PostgreSQL carries the ``postgres`` mark (``-m postgres`` selects them)."""
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


#: Where a test that runs on both databases runs: ``STRIPE_HOOKS_TEST_DATABASES``, a comma-separated
#: list, both by default. A test that names one (``on_sqlite``, ``on_postgresql``) runs there.
DATABASES = os.environ.get("STRIPE_HOOKS_TEST_DATABASES", "sqlite,postgresql").split(",")
if not set(DATABASES) <= {"sqlite", "postgresql"}:
    raise pytest.UsageError("STRIPE_HOOKS_TEST_DATABASES: sqlite, postgresql or both")


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.postgres] if name == "postgresql" else [])
        for name in ("sqlite", "postgresql")
        if name in DATABASES
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    url: str = request.getfixturevalue("postgres_url")
    reset_postgres(url)
    return url


@pytest.fixture
def hooks() -> StripeHooks:
    return StripeHooks()


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


@pytest.fixture
def thin_endpoint(app: Flask, db: SQLAlchemy, secret: str) -> Any:
    """An endpoint whose payload style is thin (an event destination), with ``secret``."""
    with app.app_context():
        return create_endpoint(db, secret=secret, payload="thin")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if terminalreporter.config.option.collectonly:
        return
    passed = terminalreporter.stats.get("passed", [])
    on_postgres = sum(1 for report in passed if "postgres" in report.keywords)
    where = f" (server: {POSTGRES_FROM[0]})" if POSTGRES_FROM else ""
    terminalreporter.write_line(f"PostgreSQL tests passed: {on_postgres}{where}")
    if not FIGURES:
        return
    terminalreporter.section("security figures")
    for name, value in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{name}: {value}")
    FIGURES_FILE.write_text(json.dumps(dict(sorted(FIGURES.items())), indent=2) + "\n")


@pytest.fixture(autouse=True)
def close_connections() -> Iterator[None]:
    """Close the pooled connections of every engine a test used when the test ends.

    An app a test builds keeps its engine until the garbage collector finds it, at any later
    moment; Python 3.13 then warns about the SQLite connection it never closed
    (``ResourceWarning: unclosed database``), which ``filterwarnings = ["error"]`` turns into
    a failure of whichever test is running. Disposing the engines here closes them in the test
    that opened them. An engine that outlives the test (a module's app) reconnects when used.
    """
    engines: weakref.WeakSet[sa.Engine] = weakref.WeakSet()

    def connected(connection: sa.Connection) -> None:
        engines.add(connection.engine)

    sa.event.listen(sa.Engine, "engine_connect", connected)
    try:
        yield
    finally:
        sa.event.remove(sa.Engine, "engine_connect", connected)
        for engine in list(engines):
            engine.dispose()


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
        if result.stderr_bytes is not None:  # Click < 8.2 mixes stderr into the output
            guard.scan("CLI stderr", result.stderr)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            guard.scan("CLI exception", repr(result.exception))
        return result

    handler = LeakHandler(guard)
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


@pytest.fixture
def stub_app(app_factory: Any, stub: Any) -> Flask:
    """An app whose Stripe API is the fake ``stub``, with its test key ``sk_test_stub``."""
    return app_factory(  # type: ignore[no-any-return]
        STRIPE_TEST_SECRET_KEY="sk_test_stub", STRIPE_HOOKS_API_BASE=stub.url
    )
