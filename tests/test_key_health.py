"""A wrong STRIPE_HOOKS_ENCRYPTION_KEY is caught before it costs a delivery: ``doctor`` and
the Health page name the endpoints whose secrets it cannot decrypt, every command that meets
one ends with one line naming the key and ``check-encryption``, and the webhook's 503 says
what is wrong. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask_stripe_hooks.models import StripeEvent, WebhookEndpoint
from flask_stripe_hooks.testing import build_event, deliver, new_secret

from support.helpers import rows

KEY, OTHER = Fernet.generate_key().decode(), Fernet.generate_key().decode()
ADMIN = "/stripe-hooks/admin"


def cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["stripe-hooks", *args])


@pytest.fixture
def encrypted(app_factory: Any) -> tuple[str, str]:
    """An endpoint whose secret was encrypted with KEY: ``(uuid, secret)``."""
    secret = new_secret()
    app = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=KEY)
    result = cli(app, "register-endpoint", "--secret", secret)
    assert result.exit_code == 0, result.output
    return str(rows(app, WebhookEndpoint)[0].uuid), secret


def one_line_error(result: Any) -> str:
    """The command failed with one line naming the key and check-encryption."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "STRIPE_HOOKS_ENCRYPTION_KEY" in line and "check-encryption" in line
    return line


def test_doctor_and_the_health_page_report_an_unreadable_secret(
    app_factory: Any, encrypted: tuple[str, str]
) -> None:
    uuid, _ = encrypted
    from support.admin_support import allow

    wrong = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=OTHER, STRIPE_HOOKS_ADMIN_AUTH=allow)
    result = cli(wrong, "doctor")
    assert result.exit_code == 1
    assert f"endpoint {uuid}" in result.output
    assert (
        "error   unreadable-secret: A signing secret cannot be decrypted with"
        " STRIPE_HOOKS_ENCRYPTION_KEY: the key that encrypted it is not in the list."
        " Every delivery to this endpoint is answered 503" in result.output
    )
    assert "check-encryption" in result.output
    assert f"flask stripe-hooks set-secret {uuid} whsec_..." in result.output

    data = json.loads(cli(wrong, "doctor", "--json").output)
    assert data["ok"] is False
    assert [f["endpoint"] for f in data["findings"] if f["code"] == "unreadable-secret"] == [uuid]

    page = wrong.test_client().get(f"{ADMIN}/health").text
    assert "unreadable-secret" in page and "STRIPE_HOOKS_ENCRYPTION_KEY" in page

    # Disabled, it is still reported: enabling it would fail.
    assert cli(wrong, "update-endpoint", uuid, "--disable").exit_code == 0
    assert "unreadable-secret" in cli(wrong, "doctor").output

    no_key = cli(app_factory(), "doctor")
    assert no_key.exit_code == 1
    assert (
        "unreadable-secret: A signing secret is encrypted and STRIPE_HOOKS_ENCRYPTION_KEY"
        " is not set." in no_key.output
    )

    both = cli(app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=[OTHER, KEY]), "doctor")
    assert "unreadable-secret" not in both.output, both.output


def test_every_command_that_meets_it_ends_with_one_line(
    app_factory: Any, encrypted: tuple[str, str]
) -> None:
    uuid, _ = encrypted
    wrong = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=OTHER)
    for args in (
        ["send-test-event", "customer.created"],
        ["send-test-event", "customer.created", "--endpoint", uuid],
        ["set-secret", uuid, new_secret(), "--keep-old-for", "1h"],
        ["rotate-encryption-key"],
    ):
        line = one_line_error(cli(wrong, *args))
        assert line.startswith("Error: A signing secret cannot be decrypted with"), args
    no_key = one_line_error(cli(app_factory(), "send-test-event", "customer.created"))
    assert "is encrypted and STRIPE_HOOKS_ENCRYPTION_KEY is not set" in no_key
    # Nothing was changed by the refusals: the right key still reads the one secret.
    right = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=KEY)
    assert len(rows(right, WebhookEndpoint)[0].secrets) == 1
    assert cli(right, "check-encryption").exit_code == 0


def test_the_webhook_says_the_secret_could_not_be_decrypted(
    app_factory: Any, encrypted: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    uuid, secret = encrypted
    wrong = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=OTHER)
    with caplog.at_level(logging.ERROR, "flask_stripe_hooks"):
        response = deliver(
            wrong.test_client(), uuid, build_event("customer.created"), secret=secret
        )
    assert response.status_code == 503
    assert response.text == (
        "signing secret could not be decrypted with STRIPE_HOOKS_ENCRYPTION_KEY, retry later\n"
    )
    assert "database" not in response.text
    (logged,) = [
        r.getMessage() for r in caplog.records if "STRIPE_HOOKS_ENCRYPTION_KEY" in r.getMessage()
    ]
    assert uuid in logged and "check-encryption" in logged
    assert rows(wrong, StripeEvent) == []  # nothing stored


def test_a_stored_event_runs_again_without_its_secret(
    app_factory: Any, encrypted: tuple[str, str]
) -> None:
    """Re-running needs no signature: an unreadable secret does not stop ``reprocess``."""
    uuid, secret = encrypted
    right = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=KEY)
    item = build_event("customer.created")
    assert deliver(right.test_client(), uuid, item, secret=secret).status_code == 200
    wrong = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=OTHER)
    result = cli(wrong, "reprocess", item["id"])
    assert result.exit_code == 0, result.output
    assert "reprocess: 1 processed" in result.output
    assert [(e.status, e.attempts) for e in rows(wrong, StripeEvent)] == [("processed", 2)]
