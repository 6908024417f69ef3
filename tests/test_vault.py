"""Signing secrets encrypted at rest (STRIPE_HOOKS_ENCRYPTION_KEY) and the audit trail of
endpoint changes, on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
import os
import re
import subprocess
import sys
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask import Flask
from flask_stripe_hooks import audit, endpoints
from flask_stripe_hooks.models import AuditEntry, WebhookEndpoint
from flask_stripe_hooks.testing import build_event, deliver, new_secret

from support.helpers import missing, rows
from support.pgserver import find_bindir

ADMIN = "/stripe-hooks/admin"
KEY, OTHER = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["stripe-hooks", *args])


def register(app: Flask, secret: str) -> WebhookEndpoint:
    result = cli(app, "register-endpoint", "--secret", secret)
    assert result.exit_code == 0, result.output
    return rows(app, WebhookEndpoint)[-1]


def dump(app: Flask) -> str:
    """Every row of every table, as text."""
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        return "\n".join(
            repr(list(db.session.execute(sa.select(table))))
            + repr(list(db.session.execute(sa.select(*[sa.cast(c, sa.Text) for c in table.c]))))
            for table in db.metadata.sorted_tables
        )


def pg_dump(url: str) -> str | None:
    bindir = find_bindir()
    if not url.startswith("postgresql") or bindir is None:
        return None
    binary = os.path.join(bindir, "pg_dump")
    if not os.access(binary, os.X_OK):
        missing("pg_dump", f"install PostgreSQL's client programs beside {bindir}/postgres")
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    return subprocess.run(
        [binary, "--data-only", plain], check=True, capture_output=True, text=True
    ).stdout


def test_no_secret_in_the_database_and_deliveries_verify(app_factory, database_url):
    app = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=KEY)
    first, second = new_secret(), new_secret()
    endpoint = register(app, first)
    assert cli(app, "set-secret", str(endpoint.uuid), second, "--keep-old-for", "1h").exit_code == 0
    stored = rows(app, WebhookEndpoint)[0].secrets
    assert len(stored) == 2 and all(s["secret"].startswith("fernet:") for s in stored)
    client = app.test_client()
    for secret in (first, second):
        response = deliver(client, endpoint.uuid, build_event("customer.created"), secret=secret)
        assert response.status_code == 200, response.text
    with app.app_context():
        assert (
            deliver(
                client, rows(app, WebhookEndpoint)[0], build_event("customer.created")
            ).status_code
            == 200
        )
    assert (
        deliver(
            client, endpoint.uuid, build_event("customer.created"), secret=new_secret()
        ).status_code
        == 400
    )
    text = dump(app)
    assert "fernet:" in text and "whsec_" not in text
    full = pg_dump(database_url)
    if full is not None:
        assert "fernet:" in full and "whsec_" not in full


def test_key_rotation_and_a_key_that_cannot_decrypt(app_factory):
    old = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=KEY)
    secret = new_secret()
    endpoint = register(old, secret)
    both = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=[OTHER, KEY])
    result = cli(both, "rotate-encryption-key")
    assert result.exit_code == 0 and "Re-encrypted 1 secret(s) of 1 endpoint(s)." in result.output
    new_only = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=OTHER)
    event = build_event("customer.created")
    assert deliver(new_only.test_client(), endpoint.uuid, event, secret=secret).status_code == 200
    assert cli(new_only, "check-encryption").exit_code == 0

    old_only = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=KEY)
    response = deliver(
        old_only.test_client(), endpoint.uuid, build_event("customer.created"), secret=secret
    )
    assert response.status_code == 503
    result = cli(old_only, "check-encryption")
    assert result.exit_code == 1 and str(endpoint.uuid) in result.output
    result = cli(old_only, "rotate-encryption-key")
    assert result.exit_code == 1 and "Nothing was changed" in result.output
    no_key = app_factory()
    response = deliver(
        no_key.test_client(), endpoint.uuid, build_event("customer.created"), secret=secret
    )
    assert response.status_code == 503


def test_unreadable_secret_is_logged_naming_the_key(app_factory, caplog):
    endpoint = register(app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=KEY), secret := new_secret())
    app = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=OTHER)
    response = deliver(
        app.test_client(), endpoint.uuid, build_event("customer.created"), secret=secret
    )
    assert response.status_code == 503
    assert "STRIPE_HOOKS_ENCRYPTION_KEY" in response.text and "database" not in response.text
    assert any(
        "STRIPE_HOOKS_ENCRYPTION_KEY" in r.getMessage() and r.levelname == "ERROR"
        for r in caplog.records
    )
    assert not any("database" in r.getMessage() for r in caplog.records)


def test_encrypt_secrets_is_idempotent(app_factory):
    clear = app_factory()
    secrets = [new_secret(), new_secret()]
    made = [register(clear, s) for s in secrets]
    assert "whsec_" in dump(clear)
    app = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=KEY)
    result = cli(app, "encrypt-secrets")
    assert result.exit_code == 0 and "Encrypted 2 secret(s) of 2 endpoint(s)." in result.output
    before = [e.secrets for e in rows(app, WebhookEndpoint)]
    result = cli(app, "encrypt-secrets")
    assert "Encrypted 0 secret(s) of 0 endpoint(s)." in result.output
    assert [e.secrets for e in rows(app, WebhookEndpoint)] == before
    assert "whsec_" not in dump(app)
    for endpoint, secret in zip(made, secrets, strict=True):
        response = deliver(
            app.test_client(), endpoint.uuid, build_event("customer.created"), secret=secret
        )
        assert response.status_code == 200
    assert cli(clear, "encrypt-secrets").exit_code == 1  # no key: says to set one


def test_bad_key_or_no_cryptography_at_init_app(app_factory, monkeypatch):
    with pytest.raises(
        RuntimeError, match=r"STRIPE_HOOKS_ENCRYPTION_KEY is not a Fernet key.*generate_key"
    ):
        app_factory(STRIPE_HOOKS_ENCRYPTION_KEY="not-a-key")
    with pytest.raises(RuntimeError, match=r"STRIPE_HOOKS_ENCRYPTION_KEY\[1\] is not a Fernet key"):
        app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=[KEY, "short"])
    monkeypatch.setitem(sys.modules, "cryptography.fernet", None)  # as if it were not installed
    with pytest.raises(RuntimeError, match=re.escape('pip install "flask-stripe-hooks[crypto]"')):
        app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=KEY)


def test_encrypted_api_keys_in_the_accounts(app_factory, stub):
    token = "fernet:" + Fernet(KEY).encrypt(b"sk_test_stub").decode()
    accounts = {"eu": {"test_secret_key": token}}
    app = app_factory(
        STRIPE_HOOKS_ENCRYPTION_KEY=KEY,
        STRIPE_HOOKS_ACCOUNTS=accounts,
        STRIPE_HOOKS_API_BASE=stub.url,
    )
    result = cli(app, "create-endpoint", "--base-url", "https://example.com", "--account", "eu")
    assert result.exit_code == 0, result.output
    endpoint = rows(app, WebhookEndpoint)[0]
    assert endpoint.account == "eu" and endpoint.secrets[0]["secret"].startswith("fernet:")
    with pytest.raises(
        RuntimeError,
        match=r"STRIPE_HOOKS_ACCOUNTS\['eu'\]\['test_secret_key'\] cannot be decrypted",
    ):
        app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=OTHER, STRIPE_HOOKS_ACCOUNTS=accounts)


# -- the audit trail ------------------------------------------------------------------------


def trail(app: Flask) -> list[tuple[str, str, str]]:
    return [
        (e.actor, e.source, e.action) for e in sorted(rows(app, AuditEntry), key=lambda e: e.id)
    ]


@pytest.mark.parametrize("key", [None, KEY], ids=["clear", "encrypted"])
def test_audit_from_the_cli(app_factory, key):
    app = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=key)
    endpoint = register(app, new_secret())
    uuid = str(endpoint.uuid)
    for args in (
        ("update-endpoint", uuid, "--disable"),
        ("update-endpoint", uuid, "--enable"),
        ("set-secret", uuid, new_secret(), "--keep-old-for", "2h"),
        ("pause", uuid),
        ("resume", uuid),
        ("delete-endpoint", uuid),
    ):
        result = cli(app, *args)
        assert result.exit_code == 0, result.output
    user = getpass.getuser()
    actions = ["created", "disabled", "enabled", "secret-rotated", "paused", "resumed", "deleted"]
    assert trail(app) == [(user, "cli", action) for action in actions]
    entries = sorted(rows(app, AuditEntry), key=lambda e: e.id)
    assert entries[1].changes == {"status": ["enabled", "disabled"]}
    assert re.fullmatch(r"rotated, 1 kept until \S+", entries[3].changes["secret"])
    assert entries[-1].endpoint_id is None and all(
        e.endpoint_uuid == endpoint.uuid for e in entries
    )
    shown = cli(app, "audit", uuid, "--limit", "3")
    assert shown.exit_code == 0
    lines = shown.output.splitlines()
    assert len(lines) == 4 and "deleted" in lines[1] and "paused" in lines[3]
    assert "whsec_" not in repr([vars(e) for e in entries])


def test_audit_from_the_admin_with_a_user_name(app_factory):
    app = app_factory(STRIPE_HOOKS_ADMIN_AUTH=lambda: "alice", STRIPE_HOOKS_ENCRYPTION_KEY=KEY)
    with app.app_context():
        uuid = endpoints.register_endpoint(new_secret(), description="shop").uuid
    client = app.test_client()
    path = f"{ADMIN}/endpoints/{uuid}"
    page = client.get(path)
    assert "whsec_••••••••" in page.text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    client.post(path + "/status", data={"csrf_token": token, "disable": "Disable"})
    client.post(
        path + "/secret", data={"csrf_token": token, "secret": new_secret(), "keep_old_for": "0"}
    )
    assert trail(app) == [
        ("code", "code", "created"),
        ("alice", "admin", "disabled"),
        ("alice", "admin", "secret-rotated"),
    ]
    page = client.get(path).text
    assert "alice" in page and "secret-rotated" in page and "rotated, 0 kept" in page


def test_audit_from_code(app):
    with app.app_context():
        endpoint = endpoints.register_endpoint(new_secret())
        endpoints.update_endpoint(endpoint, description="billing")
        with audit.acting("deploy-bot"):
            endpoints.set_secret(endpoint, new_secret())
    assert trail(app) == [
        ("code", "code", "created"),
        ("code", "code", "updated"),
        ("deploy-bot", "code", "secret-rotated"),
    ]
    assert rows(app, AuditEntry)[1].changes == {"description": ["", "billing"]}
    assert "whsec_" not in repr([vars(e) for e in rows(app, AuditEntry)])


def test_the_audit_row_rolls_back_with_the_change(app):
    with app.app_context():
        endpoint = endpoints.register_endpoint(new_secret())
        with pytest.raises(endpoints.EndpointError):
            endpoints.set_secret(endpoint, "not a secret")
    assert [a for _, _, a in trail(app)] == ["created"]
