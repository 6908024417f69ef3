"""The example app: its migrations build the schema on SQLite and PostgreSQL, and its
handlers run for events sent with the CLI, as the README shows."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from example_app import create_app, db
from example_app.models import ActivityLog, Customer
from flask_migrate import upgrade

from support.helpers import expected_lz4_columns, lz4_columns


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


# -- the login's redirect ----------------------------------------------------------------------

ADMIN_HOME = "/stripe-hooks/admin/"


@pytest.fixture
def login(tmp_path):
    """``login(next)``: log in with the right password, ``?next=`` as given (raw, as a browser
    or an attacker writes it in the URL); the response."""
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'login.db'}",
            "TESTING": True,
            "WTF_CSRF_ENABLED": False,
            "ADMIN_PASSWORD": "open-sesame",
        }
    )

    def post(next_: str):
        return app.test_client().post(
            f"/login?next={next_}", data={"username": "admin", "password": "open-sesame"}
        )

    yield post
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize(
    "next_",
    [
        "/%09/evil.example",  # a tab, dropped by browsers
        "/%0a/evil.example",
        "/%0d%0aLocation:%20https://evil.example",  # CR/LF: a header of our own
        "%0d%0a//evil.example",
        "//evil.example",
        "///evil.example",  # no host for urlsplit, one for a browser
        "/%5Cevil.example",  # /\ : browsers read \ as /
        "/%5C/evil.example",
        "%5C%5Cevil.example",
        "https://evil.example/",
        "https:evil.example",
        "javascript:alert(1)",
        "%20/evil.example",
        "/%E3%80%80/evil.example",  # an ideographic space
        "evil.example",
        "",
    ],
)
def test_login_never_redirects_off_site(login, next_):
    response = login(next_)
    assert response.status_code == 302
    assert response.headers["Location"] == ADMIN_HOME


@pytest.mark.parametrize(
    "next_, location",
    [
        ("/stripe-hooks/admin/events/", "/stripe-hooks/admin/events/"),
        (
            "/stripe-hooks/admin/events/%3Fstatus%3Dfailed",
            "/stripe-hooks/admin/events/?status=failed",
        ),
        ("/", "/"),
    ],
)
def test_login_redirects_within_the_site(login, next_, location):
    response = login(next_)
    assert (response.status_code, response.headers["Location"]) == (302, location)
