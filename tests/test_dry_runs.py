"""Dry runs equal real runs: for every command with ``--dry-run``, the dry run and then the
real run on the same data, their counts compared (and the database checked for what the real
run says it did). On SQLite and PostgreSQL."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask import Flask, current_app
from flask_stripe_hooks import StripeHooks
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery, WebhookEndpoint
from flask_stripe_hooks.testing import FakeStripe, build_event, create_endpoint, deliver
from flask_stripe_hooks.utils import utcnow

from support.helpers import record, rows


def invoke(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["stripe-hooks", *args])


def numbers(output: str, marker: str) -> list[int]:
    """The numbers of the output's one line that holds ``marker``."""
    (line,) = [line for line in output.splitlines() if marker in line]
    return [int(n) for n in re.findall(r"\d+", line)]


def dry_then_real(app: Flask, marker: str, *args: str) -> list[int]:
    """Run the command with --dry-run, then without, and compare the counts of their
    summary lines (the lines holding ``marker``). The real run may fail (exit 1: events
    whose handlers failed), but never with a traceback."""
    dry = invoke(app, *args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    real = invoke(app, *args)
    assert real.exit_code in (0, 1) and isinstance(real.exception, (SystemExit, type(None)))
    assert numbers(dry.output, marker) == numbers(real.output, marker), (dry.output, real.output)
    return numbers(real.output, marker)


def age(app: Flask, event_id: str, days: float) -> None:
    """Make an event and its deliveries ``days`` old."""
    db = app.extensions["sqlalchemy"]
    when = utcnow() - timedelta(days=days)
    with app.app_context():
        db.session.execute(
            sa.update(StripeEvent).where(StripeEvent.id == event_id).values(received_at=when)
        )
        db.session.execute(
            sa.update(WebhookDelivery)
            .where(WebhookDelivery.event_id == event_id)
            .values(received_at=when)
        )
        db.session.commit()


@pytest.fixture
def failing(app: Flask, hooks: StripeHooks) -> set[str]:
    """Event ids whose handler raises; every other event is recorded."""
    broken: set[str] = set()

    @hooks.on("*")
    def handler(event: Any, **kwargs: Any) -> None:
        if event.id in broken:
            raise RuntimeError("broken")
        record(current_app, event.id)  # type: ignore[arg-type]

    return broken


def test_prune_with_both_ages(app_factory: Any, hooks: StripeHooks, failing: Any) -> None:
    app = app_factory()
    queued = app_factory(STRIPE_HOOKS_EVENT_CALLBACK=lambda event_id: None)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    old, twice, waiting, recent, young = (build_event("customer.created") for _ in range(5))
    for item in (old, twice, twice, recent, young):
        deliver(app.test_client(), endpoint, item)
    deliver(queued.test_client(), endpoint, waiting)  # pending: kept, with its delivery
    for item, days in ((old, 40), (twice, 40), (waiting, 40), (recent, 10), (young, 2)):
        age(app, item["id"], days)

    found = dry_then_real(
        app, "prune:", "prune", "--older-than", "30d", "--bodies-older-than", "7d"
    )
    assert found == [3, 2, 30, 2, 7]  # 3 deliveries and 2 events deleted, 2 bodies cleared
    left = {d.event_id: d.body for d in rows(app, WebhookDelivery)}
    assert left == {waiting["id"]: b"", recent["id"]: b"", young["id"]: left[young["id"]]}
    assert left[young["id"]] != b""
    assert {e.id for e in rows(app, StripeEvent)} == {waiting["id"], recent["id"], young["id"]}
    again = invoke(app, "prune", "--older-than", "30d", "--bodies-older-than", "7d", "--dry-run")
    assert numbers(again.output, "prune:") == [0, 0, 30, 0, 7]


def test_reprocess_and_process_pending(app_factory: Any, hooks: StripeHooks) -> None:
    queue: list[str] = []
    app = app_factory(STRIPE_HOOKS_EVENT_CALLBACK=queue.append)
    broken = [True]

    @hooks.on("*")
    def handler(event: Any, **kwargs: Any) -> None:
        if broken[0]:
            raise RuntimeError("broken")

    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    items = [build_event("invoice.paid") for _ in range(3)]
    for item in items:
        deliver(app.test_client(), endpoint, item)
    pending = ("process-pending", "--older-than", "0")
    assert dry_then_real(app, "process-pending:", *pending) == [3]  # 3 failed
    assert {e.status for e in rows(app, StripeEvent)} == {"failed"}

    queue.clear()
    assert dry_then_real(app, "reprocess:", "reprocess", "--failed", "--enqueue") == [3]
    assert sorted(queue) == sorted(i["id"] for i in items)
    broken[0] = False
    assert dry_then_real(app, "process-pending:", *pending) == [3]  # 3 processed
    assert {e.status for e in rows(app, StripeEvent)} == {"processed"}

    inline = app_factory()
    broken[0] = True
    more = [build_event("invoice.paid") for _ in range(2)]
    for item in more:
        assert deliver(inline.test_client(), endpoint, item).status_code == 500
    broken[0] = False
    assert dry_then_real(inline, "reprocess:", "reprocess", "--failed") == [2]
    assert {e.status for e in rows(inline, StripeEvent)} == {"processed"}


def test_reprocess_enqueue_is_refused_without_a_queue_dry_or_not(app: Flask) -> None:
    for args in (["--failed", "--enqueue", "--dry-run"], ["--failed", "--enqueue"]):
        result = invoke(app, "reprocess", *args)
        assert result.exit_code == 1
        assert "--enqueue needs queue mode: set STRIPE_HOOKS_EVENT_CALLBACK" in result.output


def test_fetch_missed(app_factory: Any, hooks: StripeHooks, failing: Any, stub: FakeStripe) -> None:
    app = app_factory(STRIPE_TEST_SECRET_KEY="sk_test_stub", STRIPE_HOOKS_API_BASE=stub.url)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    day = int(time.time()) - 86400
    arrived = stub.add_event(build_event("customer.created", created=day))
    deliver(app.test_client(), endpoint, arrived)
    for _ in range(2):
        stub.add_event({**build_event("customer.updated", created=day), "pending_webhooks": 0})
    for _ in range(3):
        stub.add_event(build_event("invoice.paid", created=day))  # not delivered
    undelivered = ("fetch-missed", "--undelivered")
    assert dry_then_real(app, "fetch-missed:", *undelivered) == [3]
    assert dry_then_real(app, "fetch-missed:", "fetch-missed") == [2]
    assert len(rows(app, StripeEvent)) == 6


def test_erase(app: Flask, endpoint: Any, failing: Any) -> None:
    client = app.test_client()
    customer = build_event("customer.updated", {"id": "cus_A"})
    invoice = build_event("invoice.paid", {"customer": "cus_A"})
    other = build_event("invoice.paid", {"customer": "cus_B"})
    for item in (customer, customer, invoice, other):
        deliver(client, endpoint, item)
    found = dry_then_real(app, "of cus_A.", "erase", "--customer", "cus_A")
    assert found == [2, 3]  # 2 events, 3 deliveries
    assert [e.id for e in rows(app, StripeEvent)] == [other["id"]]
    assert [d.event_id for d in rows(app, WebhookDelivery)] == [other["id"]]


def dry_then_real_lines(app: Flask, command: str, dry_line: str, real_line: str) -> None:
    dry = invoke(app, command, "--dry-run")
    assert dry.exit_code == 0 and dry_line in dry.output, dry.output
    real = invoke(app, command)
    assert real.exit_code == 0 and real_line in real.output, real.output


def test_encrypt_secrets_and_rotate_the_key(app_factory: Any) -> None:
    from flask_stripe_hooks.testing import new_secret

    clear = app_factory()
    with clear.app_context():
        db = clear.extensions["sqlalchemy"]
        create_endpoint(db)
        endpoint = create_endpoint(db)
        db.session.execute(
            sa.update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint.id)
            .values(secrets=[{"secret": new_secret(), "expires_at": None}] * 2)
        )
        db.session.commit()
    key, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    app = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=key)

    def stored() -> list[str]:
        return [s["secret"][:7] for e in rows(app, WebhookEndpoint) for s in e.secrets]

    before = [s["secret"] for e in rows(app, WebhookEndpoint) for s in e.secrets]
    dry = invoke(app, "encrypt-secrets", "--dry-run")
    assert dry.exit_code == 0 and "Would encrypt 3 secret(s) of 2 endpoint(s)." in dry.output
    assert [s["secret"] for e in rows(app, WebhookEndpoint) for s in e.secrets] == before
    assert [s[:6] for s in stored()] == ["whsec_"] * 3
    dry_then_real_lines(
        app,
        "encrypt-secrets",
        "Would encrypt 3 secret(s) of 2 endpoint(s).",
        "Encrypted 3 secret(s) of 2 endpoint(s).",
    )
    assert stored() == ["fernet:"] * 3
    dry_then_real_lines(
        app,
        "encrypt-secrets",
        "Would encrypt 0 secret(s) of 0 endpoint(s).",
        "Encrypted 0 secret(s) of 0 endpoint(s).",
    )
    both = app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=[new, key])
    dry_then_real_lines(
        both,
        "rotate-encryption-key",
        "Would re-encrypt 3 secret(s) of 2 endpoint(s).",
        "Re-encrypted 3 secret(s) of 2 endpoint(s).",
    )
    assert invoke(app_factory(STRIPE_HOOKS_ENCRYPTION_KEY=new), "check-encryption").exit_code == 0
