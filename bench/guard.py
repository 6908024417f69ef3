"""What the trust boundaries cost a delivery when they are on, and what a flood of badly signed
requests stores.

    python bench/guard.py [--deliveries 4500] [--pairs 150] [--pg-url URL] [--quick]
    python bench/guard.py flood [--seconds 60] [--clients 4] [--workers 4] [--body-mb 4] [--old]

The same flask-stripe-hooks app twice, each on a fresh database, delivered the same blocks of
signed events in pairs (as ``ingest.py`` does): one with the settings off (the defaults), the
other with them on: ``STRIPE_HOOKS_ALLOWED_IPS = ["stripe", "127.0.0.1"]`` (the test client's
address, checked against Stripe's list), ``STRIPE_HOOKS_STORE_BODY = "failed"`` and, in the
second comparison, ``STRIPE_HOOKS_REDACT`` removing a customer's email, name and address. The
ratio printed is the median over the pairs of (time on) / (time off), with a 95% bootstrap
interval: 1.03 would be 3% slower.

``flood``: gunicorn (``--workers`` sync workers) on 127.0.0.1 serving
``tests/support/queue_app.py`` on a throwaway PostgreSQL, and ``--clients`` threads posting
``--body-mb`` MB bodies with a bad signature to one endpoint for ``--seconds``. Prints the
requests answered (by status), the rejected deliveries stored, and how much the database
(``pg_database_size``) and the WAL grew. ``--old`` keeps whole rejected deliveries with no
bound in bytes (the bound in rows only), as versions before the bound in bytes did.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import ingest  # noqa: E402

#: What a redaction typically removes.
PERSONAL = ("email", "name", "address", "phone", "shipping")


def redact(data: dict[str, Any]) -> dict[str, Any]:
    obj = data.get("object")
    if isinstance(obj, dict):
        for key in PERSONAL:
            obj.pop(key, None)
    return data


ALLOWLIST = {
    "STRIPE_HOOKS_ALLOWED_IPS": ["stripe", "127.0.0.1"],
    "STRIPE_HOOKS_STORE_BODY": "failed",
}
COMPARISONS = {
    "allowlist + store_body=failed": ALLOWLIST,
    "allowlist + store_body + redact": {**ALLOWLIST, "STRIPE_HOOKS_REDACT": redact},
}


def compare(name: str, config: dict[str, Any], backend: str, *where: Any) -> str:
    """One comparison, on against off, on one backend: its line of the report."""
    # Signed once, before the run: no time check, which a slow machine's run would outlast.
    off = {"STRIPE_HOOKS_TOLERANCE": 0}
    contenders = {"off": ("fsh", off), "on": ("fsh", {**off, **config})}
    rates, ratios = ingest.interleaved(contenders, backend, *where)
    ratio, (low, high) = common.median(ratios), common.median_interval(ratios)
    verdict = "PASS" if ratio <= 1.03 else "MISS"
    return (
        f"{backend:<10} {name:<32} on {rates['on']:6.0f}/s  off {rates['off']:6.0f}/s"
        f"   time ratio {ratio:.3f}x (median of {len(ratios)} pairs, 95% interval"
        f" {low:.3f}-{high:.3f})   {verdict} (target: at most 3% slower)"
    )


def flood() -> None:
    """``flood``: see the module's docstring."""
    import argparse

    import ack_latency  # gunicorn and the endpoint, as the acknowledge-latency bench runs them

    parser = argparse.ArgumentParser(prog="guard.py flood")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--body-mb", type=float, default=4)
    parser.add_argument("--old", action="store_true")
    args = parser.parse_args(sys.argv[2:])
    print(f"machine: {common.machine()}")
    config = ""
    if args.old:
        unbounded = ("REJECTED_PREFIX", "MAX_REJECTED_BYTES_PER_MINUTE")
        config = ", ".join(f"STRIPE_HOOKS_{key}=None" for key in unbounded)
    with common.postgres() as url, tempfile.TemporaryDirectory() as tmp:
        database_url = common.create_database(url, "flood")
        path = ack_latency.prepare(database_url, tmp)
        env = {**os.environ, "DATABASE_URL": database_url, "MARKS": tmp}
        port = ack_latency.free_port()
        server = ack_latency.start(
            [sys.executable, "-m", "gunicorn", "--workers", str(args.workers), "--bind"]
            + [f"127.0.0.1:{port}", f"support.queue_app:create_app({config})"],
            env,
            Path(tmp) / "gunicorn.log",
        )
        try:
            ack_latency.wait_port(port)
            before = _sizes(database_url)
            statuses, sent = _flood(port, path, args)
            after = _sizes(database_url)
        finally:
            ack_latency.stop(server)
    grown, wal = after[0] - before[0], after[1] - before[1]
    mb = 1024 * 1024
    print(
        f"flood: {args.clients} clients, {args.seconds:.0f} s, {args.body_mb:g} MB bodies with a"
        f" bad signature, gunicorn --workers {args.workers} (sync), PostgreSQL"
        + (" (--old: whole bodies, no bound in bytes)" if args.old else "")
    )
    print(f"  requests answered: {sum(statuses.values())} {dict(sorted(statuses.items()))}")
    print(f"  sent: {sent / mb:,.0f} MB; stored: {after[2]} rejected deliveries")
    print(f"  database grew {grown / mb:,.2f} MB; WAL written {wal / mb:,.2f} MB")


def _sizes(database_url: str) -> tuple[int, int, int]:
    """``(database size, WAL position, delivery rows)``."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT pg_database_size(current_database()),"
                " pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0'),"
                " (SELECT count(*) FROM stripe_hooks_delivery)"
            )
        ).one()
    engine.dispose()
    return int(row[0]), int(row[1]), int(row[2])


def _flood(port: int, path: str, args: Any) -> tuple[dict[int, int], int]:
    """``--clients`` threads posting badly signed bodies until ``--seconds`` are over."""
    import base64
    import http.client
    import json
    import threading
    import time

    from flask_stripe_hooks.testing import sign_payload

    # Random, so that what is stored does not compress away; 4 MB is just within MAX_BODY.
    size = int(args.body_mb * 1024 * 1024) - 16
    body = json.dumps({"padding": base64.b64encode(os.urandom(size * 3 // 4)).decode()}).encode()
    _, header = sign_payload(body, "whsec_not_the_secret")
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + args.seconds

    def client() -> None:
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", path, body=body, headers={"Stripe-Signature": header})
            status = conn.getresponse().status
            conn.close()
            with lock:
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses, sum(statuses.values()) * len(body)


def main() -> None:
    if sys.argv[1:2] == ["flood"]:
        flood()
        return
    args, bodies = ingest.prepare(__doc__, "sqlite,postgresql")
    with common.postgres(args.pg_url) as pg_url, tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            for name, config in COMPARISONS.items():
                print(compare(name, config, backend, pg_url, tmp, bodies, args), flush=True)
    if args.quick:
        print("(--quick: a smoke run; the numbers mean nothing)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
