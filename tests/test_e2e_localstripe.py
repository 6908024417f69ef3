"""End to end with real third-party parts, all on loopback:

- localstripe (PyPI) is the Stripe API and sends the webhooks, signed with the secret it is
  given at ``POST /_config/webhooks/<id>``;
- the official Stripe CLI (npm ``@stripe/cli``, installed by ``.ci/run`` into tests/node)
  is the event source: ``stripe trigger customer.created --api-base <localstripe>``;
- the example app runs under gunicorn, its schema made by its migrations and its endpoint
  recorded by ``flask stripe-hooks register-endpoint``.

The event must be stored and its handlers must have run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from example_app import create_app, db
from flask_migrate import upgrade
from flask_stripe_hooks.testing import new_secret

from support.helpers import NODE_HINT, missing

ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = Path(__file__).resolve().parent / "node" / "node_modules" / ".bin" / "stripe"
API_KEY = "sk_test_e2e_localstripe"

pytestmark = pytest.mark.slow


def stripe_cli() -> str:
    if NODE_BIN.exists() and shutil.which("node"):
        return str(NODE_BIN)
    found = shutil.which("stripe")
    if found is None:
        if shutil.which("node") is None:
            missing("Node.js (for the Stripe CLI)", NODE_HINT)
        missing("the Stripe CLI in tests/node", "(cd tests/node && npm install)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s")


class Processes:
    """Background processes, each with its output in ``<name>.log``; stopped at teardown."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with open(self.folder / f"{name}.log", "wb") as log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **kwargs)
        self.started.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        for process in self.started:
            process.terminate()
        for process in self.started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.stop()


def test_stripe_cli_trigger_through_localstripe_reaches_the_example_app(
    database_url: str, tmp_path: Path, processes: Processes
) -> None:
    if importlib.util.find_spec("localstripe") is None:
        missing("localstripe", 'python -m pip install -e ".[test]"')
    cli = stripe_cli()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "STRIPE_CLI_TELEMETRY_OPTOUT": "1",
        "HOME": str(tmp_path),  # the Stripe CLI's config goes here, not in the user's home
    }

    # The Stripe API: localstripe.
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    localstripe = processes.start(
        "localstripe",
        [sys.executable, "-m", "localstripe", "--port", str(api_port), "--from-scratch"],
        cwd=tmp_path,
    )
    # The app: schema from its migrations, an endpoint with our secret, gunicorn.
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        upgrade()
    secret = new_secret()
    result = app.test_cli_runner().invoke(
        args=["stripe-hooks", "register-endpoint", "--secret", secret, "--mode", "test"]
    )
    with app.app_context():
        db.engine.dispose()
    assert result.exit_code == 0 and secret not in result.output, result.output
    match = re.search(r"URL path: (\S+)", result.output)
    assert match, result.output
    app_port = free_port()
    gunicorn = processes.start(
        "gunicorn",
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{app_port}", "--workers", "2",
         "example_app:create_app()"],
        cwd=ROOT,
        env=env,
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{app_port}/", gunicorn)
    wait_http(f"{api}/v1/customers", localstripe)

    # Pair them: localstripe sends its events to the endpoint, signed with its secret.
    url = f"http://127.0.0.1:{app_port}{match.group(1)}"
    body = urllib.parse.urlencode({"url": url, "secret": secret}).encode()
    request = urllib.request.Request(
        f"{api}/_config/webhooks/e2e",
        data=body,
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    urllib.request.urlopen(request, timeout=10).close()

    # The event source: the official Stripe CLI, against localstripe.
    triggered = subprocess.run(
        [cli, "trigger", "customer.created", "--api-base", api, "--api-key", API_KEY],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr
    assert "Trigger succeeded" in triggered.stdout + triggered.stderr

    engine = sa.create_engine(database_url)
    try:
        deadline = time.monotonic() + 30
        while True:
            with engine.connect() as conn:
                events = conn.execute(
                    sa.text("SELECT id, type, status, data FROM stripe_hooks_event")
                ).all()
                customers = conn.execute(sa.text("SELECT stripe_id FROM customer")).scalars()
                customers = list(customers)
                handlers = conn.execute(
                    sa.text("SELECT handler FROM activity_log ORDER BY id")
                ).scalars()
                handlers = list(handlers)
                deliveries = conn.execute(
                    sa.text("SELECT valid, outcome FROM stripe_hooks_delivery")
                ).all()
            if events or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    finally:
        engine.dispose()
    assert events, processes.log("localstripe") + processes.log("gunicorn")
    ((event_id, event_type, status, _),) = events
    assert (event_type, status) == ("customer.created", "processed")
    assert event_id.startswith("evt_")
    assert [tuple(d) for d in deliveries] == [(True, "processed")]
    assert len(customers) == 1 and customers[0].startswith("cus_")
    assert handlers == ["every_event", "any_customer_event", "customer_created"]
    page = urllib.request.urlopen(f"http://127.0.0.1:{app_port}/", timeout=10).read().decode()
    assert customers[0] in page
