"""What the trust boundaries cost a delivery when they are on.

    python bench/guard.py [--deliveries 4500] [--pairs 150] [--pg-url URL] [--quick]

The same flask-stripe-hooks app twice, each on a fresh database, delivered the same blocks of
signed events in pairs (as ``ingest.py`` does): one with the settings off (the defaults), the
other with them on: ``STRIPE_HOOKS_ALLOWED_IPS = ["stripe", "127.0.0.1"]`` (the test client's
address, checked against Stripe's list), ``STRIPE_HOOKS_STORE_BODY = "failed"`` and, in the
second comparison, ``STRIPE_HOOKS_REDACT`` removing a customer's email, name and address. The
ratio printed is the median over the pairs of (time on) / (time off), with a 95% bootstrap
interval: 1.03 would be 3% slower.
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


def main() -> None:
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
