"""The Stripe CLI (``stripe``) for local development: what ``flask stripe-hooks listen`` runs.

``stripe listen --print-secret`` gives the signing secret of the CLI's forwarding session,
and ``stripe listen --forward-to URL`` forwards test-mode events to the app until stopped.
Failures raise :class:`~flask_stripe_hooks.errors.StripeHooksError` with a message to act on;
no secret is ever in one.
"""

from __future__ import annotations

import shutil
import signal
import subprocess

from .errors import StripeHooksError
from .stripe_api import scrub

#: How ``stripe listen`` ends when stopped on purpose: by itself, or by Ctrl-C / a signal.
STOPPED = (0, None, 130, -signal.SIGINT, -signal.SIGTERM)


def find() -> str:
    """The path of the ``stripe`` binary."""
    binary = shutil.which("stripe")
    if binary is None:
        raise StripeHooksError(
            "The Stripe CLI ('stripe') is not on PATH. Install it (https://docs.stripe.com/"
            "stripe-cli, or 'npm install -g @stripe/cli'), run 'stripe login', then try again."
        )
    return binary


def print_secret(binary: str, env: dict[str, str]) -> str:
    """The ``whsec_...`` that ``stripe listen --print-secret`` prints."""
    try:
        printed = subprocess.run(
            [binary, "listen", "--print-secret"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StripeHooksError(f"'stripe listen --print-secret' failed: {exc}") from None
    secret = printed.stdout.strip().splitlines()[-1].strip() if printed.stdout.strip() else ""
    if printed.returncode != 0 or not secret.startswith("whsec_"):
        detail = scrub((printed.stderr or printed.stdout).strip())[-500:]
        raise StripeHooksError(
            "'stripe listen --print-secret' gave no signing secret"
            + (f": {detail}" if detail else "; run 'stripe login' first.")
        )
    return secret


def forward(binary: str, target: str, events: list[str], env: dict[str, str]) -> int | None:
    """Run ``stripe listen --forward-to target`` until it ends or Ctrl-C; its exit code."""
    command = [binary, "listen", "--forward-to", target]
    if events != ["*"]:
        command += ["--events", ",".join(events)]
    process = None
    try:
        process = subprocess.Popen(command, env=env)
        process.wait()
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise StripeHooksError(f"Could not run 'stripe listen': {exc}") from None
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
    return None if process is None else process.returncode
