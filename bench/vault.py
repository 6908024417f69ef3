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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryptography.fernet import Fernet  # noqa: E402

import ingest  # noqa: E402


def line(rates: dict[str, float], ratio: float, low: float, high: float) -> str:
    verdict = "PASS" if ratio <= 1.03 else "MISS"
    return (
        f"encrypted {rates['encrypted']:7.0f}/s   clear {rates['clear']:7.0f}/s   time ratio"
        f" {ratio:.3f}x, 95% interval {low:.3f}-{high:.3f}   {verdict} (target: at most 3% slower)"
    )


def main() -> None:
    key = {"STRIPE_HOOKS_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    contenders = {"clear": ("fsh", {}), "encrypted": ("fsh", {"config": key})}
    ingest.paired_main(__doc__, contenders, line)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
