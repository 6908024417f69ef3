"""Without the ``metrics`` and ``otel`` extras, their settings change nothing but a warning."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    sys.modules["prometheus_client"] = None  # as if not installed: import fails
    sys.modules["opentelemetry"] = None
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy
    from flask_stripe_hooks import StripeHooks, signals
    from flask_stripe_hooks.pipeline import intake, tracing
    from flask_stripe_hooks.testing import build_event, create_endpoint, deliver

    app = Flask(__name__)
    app.config.update(SQLALCHEMY_DATABASE_URI="sqlite://", STRIPE_HOOKS_METRICS=True,
                      STRIPE_HOOKS_TRACING=True)
    db = SQLAlchemy(app)
    hooks = StripeHooks(app)
    ran = []
    hooks.on("customer")(lambda event, **kw: ran.append(event.id))
    with app.app_context():
        db.create_all()
        endpoint = create_endpoint(db)
        direct = tracing.receiver(app.extensions["stripe_hooks"]) is intake.receive
    response = deliver(app.test_client(), endpoint, build_event("customer.created"))
    listening = sum(len(signals.by_name(n).receivers) for n in signals.EVENT_OUTCOMES)
    print("status", response.status_code, "ran", len(ran), "direct", direct,
          "listening", listening, "stripe_hooks_metrics" in app.extensions)
    """
)


def test_settings_without_the_extras_only_warn(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "status",
        "200",
        "ran",
        "1",
        "direct",
        "True",
        "listening",
        "0",
        "False",
    ]
    assert "pip install 'flask-stripe-hooks[metrics]'" in done.stderr
    assert "pip install 'flask-stripe-hooks[otel]'" in done.stderr
