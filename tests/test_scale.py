"""gunicorn with 4 workers on PostgreSQL under load from another process (tests/support/loadgen.py):
duplicates, some at the same moment, and handlers that fail on their first call. Every event
must end processed, every handler effect applied exactly once, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask_stripe_hooks.models import delivery_table, event_table
from flask_stripe_hooks.testing import create_endpoint, new_secret, webhook_path

from support import queue_app
from support.helpers import on_postgresql
from support.queue_support import TESTS, app_env, start_gunicorn

DELIVERIES = int(os.environ.get("SCALE_DELIVERIES", 5000))


@pytest.mark.slow
@on_postgresql
def test_gunicorn_under_load_processes_every_event_exactly_once(
    database_url: str,
    processes: list[Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MARKS", str(marks))
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = queue_app.create_app()
    secret = new_secret()
    with app.app_context():
        queue_app.db.create_all()
        endpoint = create_endpoint(queue_app.db, secret=secret)
        path = webhook_path(app, endpoint.uuid)

    env = app_env(database_url, marks)
    env.pop("REDIS_URL", None)
    server, base = start_gunicorn(env, tmp_path / "gunicorn.log", workers=4)
    processes.append(server)

    report_file = tmp_path / "report.json"
    load = subprocess.run(
        [
            sys.executable,
            str(TESTS / "support" / "loadgen.py"),
            base + path,
            "--out",
            str(report_file),
        ]
        + ["--deliveries", str(DELIVERIES), "--duplicates", "0.3", "--fail", "0.05"]
        + ["--concurrency", "16"],
        env={**env, "STRIPE_WEBHOOK_SECRET": secret},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert load.returncode == 0, load.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert report["gave_up"] == [], server.output()[-3000:]

    with app.app_context():
        db = queue_app.db
        events = dict(db.session.execute(sa.select(event_table.c.id, event_table.c.status)).all())
        effects = dict(
            db.session.execute(
                sa.select(queue_app.handled.c.event_id, sa.func.count()).group_by(
                    queue_app.handled.c.event_id
                )
            ).all()
        )
        outcomes = dict(
            db.session.execute(
                sa.select(delivery_table.c.outcome, sa.func.count()).group_by(
                    delivery_table.c.outcome
                )
            ).all()
        )
        db.session.rollback()
        db.engine.dispose()

    counts = {
        "deliveries sent": report["deliveries"],
        "unique events": report["unique_events"],
        "duplicates at the same moment": report["concurrent_duplicates"],
        "duplicates later": report["later_duplicates"],
        "events failing on first call": report["marked_fail_once"],
        "HTTP requests (with Stripe's retries)": report["requests"],
        "responses by status": report["statuses"],
        "requests per second": report["requests_per_second"],
        "seconds": report["seconds"],
        "events stored": len(events),
        "events processed": sum(1 for s in events.values() if s == "processed"),
        "handler effects": sum(effects.values()),
        "deliveries stored by outcome": outcomes,
    }
    print("\nscale test:\n" + "\n".join(f"  {k}: {v}" for k, v in counts.items()))

    ids = report["event_ids"]
    assert report["deliveries"] >= 5000 or DELIVERIES < 5000
    assert report["concurrent_duplicates"] + report["later_duplicates"] == round(
        report["deliveries"] * 0.3
    )
    # Nothing lost: every event stored and processed.
    assert sorted(events) == ids
    assert set(events.values()) == {"processed"}
    # Every handler effect exactly once.
    assert effects == dict.fromkeys(ids, 1)
    # Each event processed by exactly one delivery; each marked event failed exactly once
    # (a 500, so Stripe retried); every other delivery was a duplicate.
    assert outcomes["processed"] == len(ids)
    assert outcomes["failed"] == report["marked_fail_once"] == report["statuses"].get("500")
    assert sum(outcomes.values()) == report["requests"]
    assert outcomes["duplicate"] == report["requests"] - len(ids) - outcomes["failed"]
    assert set(report["statuses"]) == {"200", "500"}
