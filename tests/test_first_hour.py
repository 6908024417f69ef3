"""A newcomer's mistakes, each answered with its fix: the migration not run (CLI, webhook,
admin), no SECRET_KEY, a delivery signed with the wrong secret, a secret cut short."""

from __future__ import annotations

import html
import logging
from typing import Any

import pytest
import sqlalchemy as sa
from flask_stripe_hooks.testing import build_event, create_endpoint, deliver, new_secret

from support.admin_support import ADMIN, allow

UPGRADE = "run 'flask db upgrade'"


def drop_tables(app: Any) -> None:
    with app.app_context():
        app.extensions["sqlalchemy"].drop_all()


def lines(caplog: Any, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if words in r.getMessage()]


@pytest.mark.parametrize(
    "args",
    [
        ["register-endpoint", "--secret", "whsec_" + "a" * 32],
        ["list-endpoints"],
        ["send-test-event", "customer.created"],
        ["events"],
        ["reprocess", "--failed"],
    ],
)
def test_cli_before_the_migration_says_what_to_run(app: Any, args: list[str]) -> None:
    drop_tables(app)
    result = app.test_cli_runner().invoke(args=["stripe-hooks", *args])
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()  # one line, no traceback
    assert line.startswith("Error: The database lacks flask-stripe-hooks' tables")
    assert "stripe_hooks_" in line and line.endswith(UPGRADE + ".")


def test_webhook_before_the_migration_answers_503_and_logs_once_a_minute(
    app: Any, caplog: Any
) -> None:
    secret = new_secret()
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"], secret=secret)
    drop_tables(app)
    client = app.test_client()
    caplog.set_level(logging.WARNING, "flask_stripe_hooks")
    for _ in range(3):
        response = deliver(client, endpoint, build_event("customer.created"), secret=secret)
        assert response.status_code == 503  # Stripe retries once the tables are there
        assert response.get_data(as_text=True) == "database unavailable, retry later\n"
    (line,) = lines(caplog, UPGRADE)
    assert "stripe_hooks_endpoint" in line and "Answered 503 to 1 delivery(ies)" in line
    assert not lines(caplog, "database unavailable while loading")


def test_webhook_with_an_older_event_table_says_what_to_run(app: Any, caplog: Any) -> None:
    """The package was upgraded, its migration not run: a column of the event table is
    missing. The delivery is answered 503 (Stripe retries), not 500 "handler failed"."""
    secret = new_secret()
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        endpoint = create_endpoint(db, secret=secret)
        with db.engine.begin() as conn:
            conn.execute(sa.text("DROP INDEX ix_stripe_hooks_event_object_received"))
            conn.execute(sa.text("ALTER TABLE stripe_hooks_event DROP COLUMN object_id"))
    caplog.set_level(logging.WARNING, "flask_stripe_hooks")
    client = app.test_client()
    response = deliver(client, endpoint, build_event("customer.created"), secret=secret)
    assert response.status_code == 503
    (line,) = lines(caplog, UPGRADE)
    assert "object_id" in line
    assert not lines(caplog, "handler failed")
    assert not lines(caplog, "could not record")


def test_admin_before_the_migration_says_what_to_run(app_factory: Any) -> None:
    app = app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow)
    drop_tables(app)
    client = app.test_client()
    for path in ("/", "/events/", "/deliveries/"):
        response = client.get(ADMIN + path)
        assert response.status_code == 503
        assert UPGRADE in html.unescape(response.get_data(as_text=True))


def test_no_secret_key_is_named_at_start_and_in_the_admin(app_factory: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, "flask_stripe_hooks")
    app = app_factory(SECRET_KEY=None, STRIPE_HOOKS_ADMIN_AUTH=allow)
    (line,) = lines(caplog, "SECRET_KEY")
    assert "STRIPE_HOOKS_ADMIN_URL_PREFIX = None" in line
    response = app.test_client().get(ADMIN + "/endpoints/new")
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "has no <code>SECRET_KEY</code>" in page and "CSRF" in page
    assert "A secret key is required" not in page  # not Flask-WTF's bare error


def test_admin_off_needs_no_secret_key(app_factory: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, "flask_stripe_hooks")
    app = app_factory(SECRET_KEY=None, STRIPE_HOOKS_ADMIN_URL_PREFIX=None)
    assert not lines(caplog, "SECRET_KEY")
    assert app.test_client().get(ADMIN + "/").status_code == 404


def test_a_wrong_secret_is_logged_with_what_to_check(app: Any, caplog: Any) -> None:
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    client = app.test_client()
    caplog.set_level(logging.WARNING, "flask_stripe_hooks")
    for _ in range(3):
        response = deliver(client, endpoint, build_event("customer.created"), secret=new_secret())
        assert response.status_code == 400
        assert response.get_data(as_text=True) == "signature does not match\n"
    (line,) = lines(caplog, "rejected")  # once a minute, however many arrive
    assert f"to endpoint {endpoint.uuid}" in line
    assert "signature does not match" in line
    assert f"flask stripe-hooks set-secret {endpoint.uuid} whsec_..." in line
    assert "'stripe listen'" in line and "Dashboard" in line
    assert "checked against its 1 active secret(s)" in line

    other = None
    with app.app_context():
        other = create_endpoint(app.extensions["sqlalchemy"])
    deliver(client, other, build_event("customer.created"), secret=new_secret())
    assert len(lines(caplog, "rejected")) == 2  # each endpoint has its own line
    assert str(other.uuid) in lines(caplog, "rejected")[-1]


def test_a_short_secret_is_told_it_is_too_short(app: Any) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["stripe-hooks", "register-endpoint", "--secret", "whsec_abc"])
    assert result.exit_code == 1
    assert "too short (9 characters" in result.output
    assert "whsec_abc" not in result.output
    result = runner.invoke(args=["stripe-hooks", "register-endpoint", "--secret", "sk_test_1"])
    assert "A signing secret starts with 'whsec_'" in result.output
