"""The example app: its migrations build the schema on SQLite and PostgreSQL, and its
handlers run for events sent with the CLI, as the README shows."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from example_app import create_app, db
from example_app.models import ActivityLog, Customer
from flask_migrate import upgrade

from helpers import expected_lz4_columns, lz4_columns


@pytest.fixture
def example(database_url):
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "TESTING": True})
    with app.app_context():
        upgrade()  # the shipped migrations, not create_all()
    yield app
    with app.app_context():
        db.engine.dispose()


def test_migrations_create_every_table(example):
    with example.app_context():
        inspector = sa.inspect(db.engine)
        names = set(inspector.get_table_names())
        assert {
            "stripe_hooks_endpoint",
            "stripe_hooks_delivery",
            "stripe_hooks_event",
            "customer",
            "activity_log",
        } <= names
        columns = {c["name"]: c for c in inspector.get_columns("stripe_hooks_event")}
        if db.engine.dialect.name == "postgresql":
            assert columns["data"]["type"].__class__.__name__ == "JSONB"


def test_the_migration_compresses_large_columns_with_lz4(example):
    with example.app_context():
        assert lz4_columns(db.engine) == expected_lz4_columns(db.engine)


def test_models_match_the_migrations(example):
    """Autogenerate finds nothing to add: the shipped migration is up to date."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with example.app_context(), db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []


def test_quickstart_flow(example, secret):
    runner = example.test_cli_runner()
    result = runner.invoke(args=["stripe-hooks", "register-endpoint", "--secret", secret])
    assert result.exit_code == 0, result.output
    for args in (
        ["customer.created", "--data", '{"email": "jane@example.com"}'],
        ["customer.subscription.trial_will_end"],
        ["price.created"],
    ):
        result = runner.invoke(args=["stripe-hooks", "send-test-event", *args])
        assert result.exit_code == 0, result.output
    with example.app_context():
        (customer,) = db.session.execute(sa.select(Customer)).scalars()
        assert customer.email == "jane@example.com"
        log = [
            (a.handler, a.message)
            for a in db.session.execute(sa.select(ActivityLog).order_by(ActivityLog.id)).scalars()
        ]
    handlers = [h for h, _ in log]
    assert handlers == [
        "every_event",
        "any_customer_event",
        "customer_created",  # customer.created
        "every_event",
        "any_customer_event",
        "trial_ending",  # subscription.trial_will_end
        "every_event",
        "catalog_changed",  # price.created
    ]
    page = example.test_client().get("/").get_data(as_text=True)
    assert "jane@example.com" in page and re.search(r"trial of sub_\w+ ends soon", page)
