"""What encrypting the signing secrets at rest (``STRIPE_HOOKS_ENCRYPTION_KEY``) costs ingest.

    python bench/vault.py [--deliveries 4500] [--pairs 150] [--pg-url URL] [--quick]

The same flask-stripe-hooks app twice, each on a fresh database, delivered the same blocks of
signed events in pairs (as ``ingest.py`` does): one with a Fernet key (its endpoint's secret
stored encrypted, decrypted when the endpoint cache reads the row), the other without. The
ratio printed is the median over the pairs of (time with encryption) / (time without), with a
95% bootstrap interval: 1.03 would be 3% slower.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryptography.fernet import Fernet  # noqa: E402

import common  # noqa: E402
import ingest  # noqa: E402
import payloads  # noqa: E402


def main() -> None:
    parser = ingest.run_arguments(__doc__)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = ingest.quick(parser.parse_args())
    print(f"machine: {common.machine()}")
    bodies = payloads.bodies(args.deliveries + args.warmup)
    print(f"payloads: {payloads.describe(bodies)}")
    key = {"STRIPE_HOOKS_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    contenders = {"clear": ("fsh", {}), "encrypted": ("fsh", {"config": key})}
    with common.postgres(args.pg_url) as pg_url, tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            rates, ratios = ingest.interleaved(contenders, backend, pg_url, tmp, bodies, args)
            ratio = common.median(ratios)
            low, high = common.median_interval(ratios)
            print(
                f"{backend:<10} encrypted {rates['encrypted']:7.0f}/s   clear"
                f" {rates['clear']:7.0f}/s   time ratio {ratio:.3f}x (median of {len(ratios)}"
                f" pairs, 95% interval {low:.3f}-{high:.3f}; total rates"
                f" {rates['clear'] / rates['encrypted']:.3f}x)"
                f"   {'PASS' if ratio <= 1.03 else 'MISS'} (target: at most 3% slower)",
                flush=True,
            )
    if args.quick:
        print("(--quick: a smoke run; the numbers mean nothing)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
