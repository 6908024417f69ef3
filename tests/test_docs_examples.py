"""The docs' code, run as a user runs it: the quickstart's ``myapp`` built from the code blocks
of docs/quickstart.md and docs/testing.md (each block named by its first line, e.g.
``# myapp/__init__.py``), migrated with ``flask db`` on SQLite and PostgreSQL, its tests run by
pytest, and "Add endpoint" tried against ``python -m flask_stripe_hooks.testing.fake_stripe``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import stripe

DOCS = Path(__file__).parents[1] / "docs"
BLOCK = re.compile(r"^```python\n# (\S+\.py)\n(.*?)^```", re.S | re.M)


def write_docs_app(root: Path) -> list[str]:
    """Write every named code block of the quickstart and testing pages under ``root``;
    their names."""
    names = []
    for page in ("quickstart.md", "testing.md"):
        for name, code in BLOCK.findall((DOCS / page).read_text()):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(code)
            names.append(name)
    return names


def run(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **env}
    environ["PYTHONPATH"] = os.pathsep.join([str(root), environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, *args], cwd=root, env=environ, capture_output=True, text=True, timeout=120
    )


def flask(root: Path, *args: str, **env: str) -> str:
    result = run(root, "-m", "flask", "--app", "myapp", *args, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def subscription_status(database_url: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, status FROM subscription")).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def test_the_docs_name_the_app_files(tmp_path: Path) -> None:
    assert write_docs_app(tmp_path) == [
        "myapp/__init__.py",
        "myapp/models.py",
        "myapp/stripe_handlers.py",
        "tests/test_stripe_handlers.py",
        "tests/test_stripe_endpoints.py",
    ]


def test_quickstart_migrates_and_handles_an_event(tmp_path: Path, database_url: str) -> None:
    """``flask db init / migrate / upgrade`` as the quickstart says, without hand edits, then
    its "Try it" commands run the handler."""
    write_docs_app(tmp_path)
    env = {"DATABASE_URL": database_url}
    flask(tmp_path, "db", "init", **env)
    flask(tmp_path, "db", "migrate", "-m", "stripe hooks", **env)
    (migration,) = (tmp_path / "migrations" / "versions").glob("*.py")
    assert "postgresql.JSONB()" in migration.read_text()
    flask(tmp_path, "db", "upgrade", **env)

    engine = sa.create_engine(database_url)
    tables = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert {
        "stripe_hooks_endpoint",
        "stripe_hooks_delivery",
        "stripe_hooks_event",
        "subscription",
        "alembic_version",
    } <= tables
    # Nothing left to migrate: the models and the generated migration agree.
    flask(tmp_path, "db", "check", **env)

    flask(tmp_path, "stripe-hooks", "register-endpoint", "--secret", "whsec_try_it", **env)
    out = flask(
        tmp_path,
        *("stripe-hooks", "send-test-event", "customer.subscription.updated"),
        *("--data", '{"status": "active"}'),
        **env,
    )
    assert "→ 200" in out
    assert [status for _, status in subscription_status(database_url)] == ["active"]


def test_testing_page_examples_pass(tmp_path: Path) -> None:
    write_docs_app(tmp_path)
    result = run(tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


@pytest.fixture
def fake_stripe_server() -> Iterator[str]:
    """``python -m flask_stripe_hooks.testing.fake_stripe --port 0``, as a user starts it;
    its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "flask_stripe_hooks.testing.fake_stripe", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # one line per request
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline() + process.stdout.readline()
        match = re.search(r"export STRIPE_HOOKS_API_BASE=(http://127\.0\.0\.1:\d+)", banner)
        assert match, banner
        yield match.group(1)
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_add_endpoint_without_a_stripe_account(tmp_path: Path, fake_stripe_server: str) -> None:
    """The endpoints page's try-out: the fake as a server, ``create-endpoint``, then a
    delivery signed with the secret the fake handed out reaches the handler."""
    write_docs_app(tmp_path)
    url = f"sqlite:///{tmp_path / 'app.db'}"
    env = {
        "DATABASE_URL": url,
        "STRIPE_HOOKS_API_BASE": fake_stripe_server,
        "STRIPE_TEST_SECRET_KEY": "sk_test_fake",
    }
    flask(tmp_path, "db", "init", **env)
    flask(tmp_path, "db", "migrate", **env)
    flask(tmp_path, "db", "upgrade", **env)
    out = flask(
        tmp_path, "stripe-hooks", "create-endpoint", "--base-url", "https://shop.example", **env
    )
    endpoint_uuid = re.search(r"endpoint ([0-9a-f-]{36})", out)
    assert endpoint_uuid, out

    client = stripe.StripeClient("sk_test_fake", base_addresses={"api": fake_stripe_server})
    (on_stripe,) = client.v1.webhook_endpoints.list().data
    assert on_stripe.url == f"https://shop.example/stripe/webhook/{endpoint_uuid.group(1)}/"

    out = flask(
        tmp_path,
        *("stripe-hooks", "send-test-event", "customer.subscription.updated"),
        *("--data", '{"status": "trialing"}'),
        **env,
    )
    assert "→ 200" in out
    assert [status for _, status in subscription_status(url)] == ["trialing"]


def test_every_setting_is_in_the_configuration_reference(tmp_path: Path) -> None:
    """The API reference sends readers to docs/configuration.md for StripeHooks' settings:
    every key ``init_app`` sets a default for is there."""
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy
    from flask_stripe_hooks import StripeHooks

    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'settings.db'}"
    SQLAlchemy(app)
    StripeHooks(app)
    keys = {key for key in app.config if key.startswith("STRIPE_")}
    assert len(keys) > 20
    page = (DOCS / "configuration.md").read_text()
    assert sorted(key for key in keys if f"`{key}`" not in page) == []
