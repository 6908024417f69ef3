"""Concurrent deliveries of one event id from several processes, on a real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask_stripe_hooks import StripeHooks
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery
from flask_stripe_hooks.testing import build_event, create_endpoint, sign_payload

from support.helpers import handled, make_app, reset_postgres, rows

#: Run as ``python -m support.concurrent_delivery`` from tests/.
TESTS = Path(__file__).parent
PROCESSES = 6


def deliver_concurrently(app, url: str, tmp_path: Path, fail: bool) -> list[str]:
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    event = build_event("customer.subscription.updated")
    body, header = sign_payload(event, endpoint.secrets[0]["secret"])
    body_file = tmp_path / "body.json"
    body_file.write_text(body)
    start_at = time.time() + 3.0  # every process has imported and built its app by then
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "support.concurrent_delivery",
                url,
                str(endpoint.uuid),
                str(body_file),
                header,
                str(start_at),
                "1" if fail else "0",
            ],
            cwd=TESTS,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outputs.append(out.strip().splitlines()[-1])
    return outputs


@pytest.fixture
def pg_url(postgres_url):
    reset_postgres(postgres_url)
    return postgres_url


@pytest.fixture
def app(pg_url):
    app = make_app(pg_url, StripeHooks())
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def test_concurrent_duplicates_apply_effects_exactly_once(app, pg_url, tmp_path):
    outputs = deliver_concurrently(app, pg_url, tmp_path, fail=False)
    assert sorted(outputs) == ["200 duplicate"] * (PROCESSES - 1) + ["200 processed"]
    assert len(handled(app)) == 1
    (event,) = rows(app, StripeEvent)
    assert event.status == "processed" and event.attempts == 1
    outcomes = sorted(d.outcome for d in rows(app, WebhookDelivery))
    assert outcomes == ["duplicate"] * (PROCESSES - 1) + ["processed"]


def test_concurrent_failing_deliveries_leave_no_effect(app, pg_url, tmp_path):
    outputs = deliver_concurrently(app, pg_url, tmp_path, fail=True)
    assert outputs == ["500 handler failed"] * PROCESSES  # each attempt ran and rolled back
    assert handled(app) == []
    (event,) = rows(app, StripeEvent)
    assert event.status == "failed" and event.attempts == PROCESSES
    assert len(rows(app, WebhookDelivery)) == PROCESSES
