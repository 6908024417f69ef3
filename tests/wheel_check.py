"""The built distributions as a user gets them (``nox -s wheel`` runs this; not a pytest file).

    python tests/wheel_check.py dist/flask_stripe_hooks-*.whl dist/flask_stripe_hooks-*.tar.gz

Run it with a Python that has the wheel installed (not ``-e``), from a folder outside the
checkout. It checks that the wheel holds the package data (the admin's templates and static
files, the Stripe IP list, ``py.typed``) and the sdist the docs and tests but nothing
installed into the checkout (``node_modules``, ``__pycache__``), then uses the installed
package: the admin answers with its pages and static files, the ``stripe`` allowlist reads
the shipped IP list, and ``flask stripe-hooks`` records an endpoint and delivers a test event.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import zipfile
from pathlib import Path

APP = """
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_stripe_hooks import StripeHooks

db = SQLAlchemy()
hooks = StripeHooks()


@hooks.on("customer")
def customer_event(event, **kwargs):
    print("handled", event.type)


def create_app(**config):
    app = Flask(__name__, instance_path=HERE + "/instance")
    app.config.update(
        SQLALCHEMY_DATABASE_URI="sqlite:///" + HERE + "/app.db",
        SECRET_KEY="wheel-check",
        STRIPE_HOOKS_ADMIN_AUTH=lambda: True,
        **config,
    )
    db.init_app(app)
    hooks.init_app(app)
    with app.app_context():
        db.create_all()
    return app
"""


def fail(message: str) -> None:
    sys.exit(f"wheel check FAILED: {message}")


def check_contents(dists: list[Path]) -> None:
    wheels = [d for d in dists if d.name.endswith(".whl")]
    sdists = [d for d in dists if d.name.endswith(".tar.gz")]
    if len(wheels) != 1 or len(sdists) != 1:
        fail(f"expected one wheel and one sdist, got {[d.name for d in dists]}")
    names = zipfile.ZipFile(wheels[0]).namelist()
    for pattern in (
        r"^flask_stripe_hooks/py\.typed$",
        r"^flask_stripe_hooks/(.+/)?templates/stripe_hooks/admin/base\.html$",
        r"^flask_stripe_hooks/(.+/)?static/stripe_hooks/admin\.css$",
        r"^flask_stripe_hooks/(.+/)?static/stripe_hooks/admin\.js$",
        r"^flask_stripe_hooks/(.+/)?stripe_webhook_ips\.json$",
    ):
        if not any(re.search(pattern, name) for name in names):
            fail(f"the wheel has no file matching {pattern}")
    with tarfile.open(sdists[0]) as sdist:
        members = [m.name.split("/", 1)[-1] for m in sdist.getmembers()]
    for wanted in ("pyproject.toml", "README.md", "CHANGES.md", "LICENSE", "docs/index.md"):
        if wanted not in members:
            fail(f"the sdist has no {wanted}")
    if not any(m.startswith("tests/test_") for m in members):
        fail("the sdist has no tests")
    stray = [m for m in members if "node_modules" in m or "__pycache__" in m or m.endswith(".pyc")]
    if stray:
        fail(f"the sdist holds files installed into the checkout: {stray[:5]}")
    print(f"contents: {wheels[0].name} ({len(names)} files), {sdists[0].name} ({len(members)})")


def check_admin_and_allowlist(here: Path) -> None:
    sys.path.insert(0, str(here))
    import flask_stripe_hooks
    import wheelapp  # type: ignore[import-not-found]

    package = Path(flask_stripe_hooks.__file__).parent
    if "site-packages" not in package.parts:
        fail(f"flask_stripe_hooks was imported from {package}, not from the installed wheel")

    client = wheelapp.create_app().test_client()
    page = client.get("/stripe-hooks/admin/")
    if page.status_code != 200 or "Endpoints" not in page.text:
        fail(f"the admin's endpoint list answered {page.status_code}")
    assets = sorted(set(re.findall(r'(?:href|src)="([^"]*/_static/[^"?]+)', page.text)))
    if not any(a.endswith(".css") for a in assets) or not any(a.endswith(".js") for a in assets):
        fail(f"the admin page links no stylesheet or script: {assets}")
    for asset in assets:
        response = client.get(asset)
        if response.status_code != 200 or not response.data:
            fail(f"{asset} answered {response.status_code}")
        response.close()
    for path in ("/stripe-hooks/admin/events/", "/stripe-hooks/admin/deliveries/"):
        if client.get(path).status_code != 200:
            fail(f"{path} did not answer 200")
    print(f"admin: 3 pages and {len(assets)} static files served")

    (ips_file,) = package.rglob("stripe_webhook_ips.json")
    stripe_ip = re.findall(r'"(\d+\.\d+\.\d+\.\d+)"', ips_file.read_text())[0]
    guarded = wheelapp.create_app(STRIPE_HOOKS_ALLOWED_IPS="stripe").test_client()
    url = "/stripe/webhook/00000000-0000-4000-8000-000000000000/"
    refused = guarded.post(url, environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code
    allowed = guarded.post(url, environ_base={"REMOTE_ADDR": stripe_ip}).status_code
    if refused != 403 or allowed == 403:
        fail(f"the 'stripe' allowlist answered {refused} to 127.0.0.1 and {allowed} to {stripe_ip}")
    print(f"allowlist: Stripe's shipped addresses read ({stripe_ip} let through)")


def flask(here: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wheelapp:create_app()", *args],
        cwd=here,
        env={**os.environ, "PYTHONPATH": str(here)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        fail(f"flask {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout


def check_cli(here: Path) -> None:
    out = flask(here, "stripe-hooks", "register-endpoint", "--secret", "whsec_wheel_check")
    if not re.search(r"[0-9a-f-]{36}", out):
        fail(f"register-endpoint printed no endpoint uuid:\n{out}")
    out = flask(here, "stripe-hooks", "send-test-event", "customer.created")
    if "→ 200" not in out or "handled customer.created" not in out:
        fail(f"send-test-event did not reach the handler:\n{out}")
    out = flask(here, "stripe-hooks", "events")
    if "customer.created" not in out:
        fail(f"events does not list the test event:\n{out}")
    print("cli: register-endpoint, send-test-event and events ran")


def main() -> None:
    check_contents([Path(arg) for arg in sys.argv[1:]])
    with tempfile.TemporaryDirectory() as tmp:
        here = Path(tmp)
        (here / "wheelapp.py").write_text(f"HERE = {str(here)!r}\n" + textwrap.dedent(APP))
        check_admin_and_allowlist(here)
        check_cli(here)
    print("wheel check passed")


if __name__ == "__main__":
    main()
