"""Several processes delivering at the same moment, each with an app of its own, on PostgreSQL
(test_concurrency.py, test_order.py, test_thin_twins.py).

Each process (``python -m support.concurrent_delivery DATABASE_URL HANDLER``, from tests/)
builds its app, says ``ready``, then for each line it reads (a delivery as JSON:
``[endpoint_uuid, body, header]``) posts it and answers a line of ``STATUS TEXT``.
``Deliverers`` starts them and lets every process go at once: no process waits on a clock for
the others to start, and one set of processes serves several rounds.

HANDLER: ``slow`` (records its effect after 0.3 s), ``failing`` (the same, then raises) or
``newest`` (a ``latest_only`` handler keeping each subscription's newest state in
``object_state``).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask_stripe_hooks import StripeHooks

from .helpers import make_app, record

TESTS = Path(__file__).parents[1]
UPSERT = sa.text(
    "INSERT INTO object_state (id, status, event_id) VALUES (:id, :status, :event_id)"
    " ON CONFLICT (id) DO UPDATE SET status = excluded.status, event_id = excluded.event_id"
)


class Deliverers:
    """``count`` processes with a ``handler`` each, ready once built; ``round`` gives each one
    delivery (``(endpoint_uuid, body, header)``), lets them all go at once and returns their
    answers, in the same order."""

    def __init__(self, url: str, handler: str, count: int) -> None:
        command = [sys.executable, "-m", "support.concurrent_delivery", url, handler]
        self.procs = [
            subprocess.Popen(
                command,
                cwd=TESTS,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]
        for proc in self.procs:  # they start side by side; each says when its app is built
            assert self._line(proc) == "ready"

    def _line(self, proc: subprocess.Popen[str]) -> str:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            _, err = proc.communicate(timeout=60)
            raise AssertionError(f"a delivering process ended: {err}")
        return line.strip()

    def round(self, work: list[tuple[Any, str, str]]) -> list[str]:
        lines = [json.dumps([str(endpoint), body, header]) for endpoint, body, header in work]
        for proc, line in zip(self.procs, lines, strict=True):  # all at once: no reads between
            assert proc.stdin is not None
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
        return [self._line(proc) for proc in self.procs]

    def __enter__(self) -> Deliverers:
        return self

    def __exit__(self, *exc: Any) -> None:
        for proc in self.procs:
            _, err = proc.communicate(timeout=60)  # closes its stdin: the process ends
            if exc[0] is None:
                assert proc.returncode == 0, err


def main() -> None:
    url, handler = sys.argv[1:3]
    hooks = StripeHooks()
    app = make_app(url, hooks)
    db = app.extensions["sqlalchemy"]

    if handler == "newest":

        @hooks.on("customer.subscription", latest_only=True)
        def keep_newest(event: Any, **kwargs: Any) -> None:
            time.sleep(random.uniform(0, 0.2))  # widen the window in which the others arrive
            sub = event.object
            values = {"id": sub["id"], "status": sub["status"], "event_id": event.id}
            db.session.execute(UPSERT, values)

    else:

        @hooks.on("*")
        def slow_handler(event: Any, **kwargs: Any) -> None:
            time.sleep(0.3)  # widen the window in which the others arrive
            record(app, event.id, "effect")
            if handler == "failing":
                raise RuntimeError("fails every time")

    client = app.test_client()
    print("ready", flush=True)
    for line in sys.stdin:
        endpoint_uuid, body, header = json.loads(line)
        response = client.post(
            f"/stripe/webhook/{endpoint_uuid}/",
            data=body.encode(),
            headers={"Stripe-Signature": header},
        )
        print(response.status_code, response.get_data(as_text=True).strip(), flush=True)


if __name__ == "__main__":
    main()
