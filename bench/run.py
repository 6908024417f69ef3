"""flask-stripe-hooks against dj-stripe 2.11 and a hand-written receiver.

    python bench/run.py            # the full run (about half an hour on 2 cores)
    python bench/run.py --quick    # a smoke run for CI: every system, every scenario, tiny

One command. It makes its own virtualenvs under ``bench/.venvs/`` (``flask``: this project,
editable, with psycopg and gunicorn; ``djstripe``: dj-stripe 2.11 with the Django and stripe
versions it pins), starts a throwaway PostgreSQL server, and runs every system on the same
signed deliveries (``payloads.py``) in these scenarios:

- ``inproc-sqlite`` / ``inproc-pg``: the system's WSGI app called in-process (``driver.py``),
  a SQLite file / PostgreSQL;
- ``inproc-pg-dup20``: the same with 20% of the deliveries re-sent (Stripe's retries);
- ``http-pg``: gunicorn on loopback (2 sync workers for every system) and ``loadgen.py`` in its
  own process at 32 concurrent clients; every system's server runs at once and each round
  sends one block of the deliveries to each in turn;
- ``memory``: 100,000 events through one gunicorn worker; its RSS after 1,000 and after
  100,000 events.

Each scenario runs in rounds, every system once per round on a fresh copy of its seeded
database, the order rotating; the ratios are medians over the rounds (back-to-back pairs).
Every run must answer 200 to every delivery and leave exactly one handler row per event.
Prints one table and writes the raw results to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402
import payloads  # noqa: E402

VENVS = HERE / ".venvs"
REQUIREMENTS = {
    "flask": ["-e", str(common.ROOT), "psycopg[binary]>=3.1", "gunicorn>=22", "uvloop>=0.19"],
    "djstripe": ["dj-stripe==2.11.*", "psycopg[binary]>=3.3.4", "gunicorn>=22"],
}
VENV_OF = {"fsh": "flask", "minimal": "flask", "handwritten": "flask", "djstripe": "djstripe"}
LABEL = {
    "fsh": "flask-stripe-hooks",
    "djstripe": "dj-stripe 2.11",
    "handwritten": "hand-written Flask",
    "minimal": "minimal Flask",
}
PATHS = {
    "fsh": f"/stripe/webhook/{payloads.ENDPOINT_UUID}/",
    "minimal": f"/minimal/webhook/{payloads.ENDPOINT_UUID}/",
    "handwritten": "/stripe/webhook",
    "djstripe": f"/stripe/webhook/{payloads.ENDPOINT_UUID}/",
}
#: fsh's target against each peer: rate ratio, and (over HTTP) p99 no more than 1/x of theirs.
TARGETS = {"djstripe": 3.0, "handwritten": 1.2, "minimal": 1.0}
P99_TARGET = {"djstripe": 2.0}
WORKERS = 2


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- virtualenvs -------------------------------------------------------------------------


def python(venv: str) -> str:
    return str(VENVS / venv / "bin" / "python")


def ensure_venvs() -> None:
    """Create each virtualenv once; re-install when its requirements change."""
    VENVS.mkdir(exist_ok=True)
    (VENVS / ".gitignore").write_text("*\n")
    for name, reqs in REQUIREMENTS.items():
        marker = VENVS / name / ".bench-requirements"
        wanted = json.dumps(reqs)
        if marker.exists() and marker.read_text() == wanted:
            continue
        log(f"== installing the {name} virtualenv (bench/.venvs/{name})")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENVS / name)], check=True)
        with open(VENVS / "install.log", "a") as out:
            subprocess.run(
                [python(name), "-m", "pip", "install", "-q", "--disable-pip-version-check", *reqs],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        marker.write_text(wanted)


def versions() -> dict[str, str]:
    out = {}
    for name, pkgs in {
        "flask": "flask flask-sqlalchemy sqlalchemy stripe gunicorn",
        "djstripe": "dj-stripe django stripe gunicorn",
    }.items():
        code = (
            "import importlib.metadata as m;"
            f"print(', '.join(p + ' ' + m.version(p) for p in {pkgs.split()!r}))"
        )
        out[name] = subprocess.run(
            [python(name), "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
    return out


# -- databases ---------------------------------------------------------------------------


class Databases:
    """A seeded template per system and engine; every run gets a fresh copy."""

    def __init__(self, pg_url: str, tmp: Path) -> None:
        self.pg_url = pg_url
        self.tmp = tmp
        self.templates: set[tuple[str, str]] = set()
        self.counter = 0

    def _setup(self, system: str, url: str) -> None:
        subprocess.run(
            [python(VENV_OF[system]), str(HERE / "driver.py"), "setup"]
            + ["--system", system, "--db", url],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def fresh(self, system: str, engine: str) -> str:
        self.counter += 1
        if engine == "sqlite":
            template = self.tmp / f"template_{system}.db"
            if (system, engine) not in self.templates:
                self._setup(system, f"sqlite:///{template}")
                self.templates.add((system, engine))
            path = self.tmp / f"run{self.counter}_{system}.db"
            shutil.copy(template, path)
            return f"sqlite:///{path}"
        name = f"template_{system}"
        if (system, engine) not in self.templates:
            self._setup(system, common.create_database(self.pg_url, name))
            self.templates.add((system, engine))
        return common.create_database(self.pg_url, f"run{self.counter}_{system}", name)

    def drop(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).unlink(missing_ok=True)
        else:
            common.drop_database(self.pg_url, url.rpartition("/")[2])


def row_counts(system: str, url: str) -> dict[str, int]:
    out = subprocess.run(
        [python(VENV_OF[system]), str(HERE / "driver.py"), "counts", "--system", system]
        + ["--db", url],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


# -- one run -----------------------------------------------------------------------------


class Failure(Exception):
    pass


def check_statuses(result: dict[str, Any], system: str, deliveries: int) -> None:
    bad = {k: v for k, v in result["statuses"].items() if k != "200"}
    if bad or sum(result["statuses"].values()) != deliveries:
        raise Failure(f"{system}: answers {result['statuses']}, expected {deliveries} × 200")


def check(result: dict[str, Any], system: str, deliveries: int, unique: int) -> None:
    check_statuses(result, system, deliveries)
    rows = result["rows"]
    if not (rows["handled"] == rows["handled_distinct"] == rows["events"] == unique):
        raise Failure(f"{system}: rows {rows}, expected {unique} events, one handler row each")


def _driver(command: str, system: str, url: str, bodies: list[str], warmup: int, tmp: Path) -> Any:
    """``driver.py COMMAND`` in the system's virtualenv on freshly signed ``bodies``; its JSON."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", dir=tmp) as fh:
        payloads.write(fh.name, bodies)  # signed now: the timestamps are fresh
        proc = subprocess.run(
            [python(VENV_OF[system]), str(HERE / "driver.py"), command, "--system", system]
            + ["--db", url, "--payloads", fh.name, "--warmup", str(warmup)],
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        raise Failure(f"{system}: driver {command} failed\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def inproc(dbs: Databases, system: str, engine: str, bodies: list[str], warmup: int) -> Any:
    url = dbs.fresh(system, engine)
    result = _driver("inproc", system, url, bodies, warmup, dbs.tmp)
    check(result, system, len(bodies), len(set(bodies)))
    dbs.drop(url)
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gunicorn:
    """gunicorn serving one system from its own virtualenv, on a loopback port."""

    def __init__(self, system: str, url: str, workers: int, tmp: Path) -> None:
        self.port = free_port()
        self.log = open(tmp / f"gunicorn_{system}.log", "a")
        env = dict(os.environ, BENCH_SYSTEM=system, BENCH_DB=url, PYTHONUNBUFFERED="1")
        gunicorn = str(VENVS / VENV_OF[system] / "bin" / "gunicorn")
        self.proc = subprocess.Popen(
            [gunicorn, "--chdir", str(HERE), "-w", str(workers), "-k", "sync"]
            + ["-b", f"127.0.0.1:{self.port}", "--backlog", "2048", "--timeout", "120"]
            + ["--log-level", "warning", "wsgi:application"],
            env=env,
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.monotonic() + 60
        while len(self.workers()) < workers or not self._listening():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise Failure(f"gunicorn for {system} did not start; see {self.log.name}")
            time.sleep(0.2)
        time.sleep(1.0)  # let every worker finish importing the app

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def workers(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def memory_mb(self, field: str = "VmHWM") -> float:
        """The largest worker's peak (VmHWM) or current (VmRSS) resident memory."""
        sizes = []
        for pid in self.workers():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    sizes.append(int(line.split()[1]) / 1024)
        return max(sizes, default=0.0)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def loadgen(port: int, path: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [python("flask"), str(HERE / "loadgen.py"), "--port", str(port), "--path", path, *args],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise Failure(f"loadgen failed\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def http(
    dbs: Databases, systems: list[str], bodies: list[str], args: argparse.Namespace
) -> dict[str, list[dict[str, Any]]]:
    """Every system behind its own gunicorn at once; the timed deliveries go in blocks, one
    block per round to each system in turn (the order rotating), so that a pair of runs is
    seconds apart, not minutes: this machine's speed drifts by ±20% over minutes."""
    servers, urls = {}, {}
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    timed = bodies[args.warmup :]
    size = len(timed) // args.rounds
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", dir=dbs.tmp) as fh:
            for system in systems:
                urls[system] = dbs.fresh(system, "postgresql")
                servers[system] = Gunicorn(system, urls[system], WORKERS, dbs.tmp)
                payloads.write(fh.name, bodies[: args.warmup])
                port = servers[system].port
                warm = loadgen(port, PATHS[system], "--payloads", fh.name, "--concurrency", "4")
                check_statuses(warm, system, args.warmup)
            for r in range(args.rounds):
                payloads.write(fh.name, timed[r * size : (r + 1) * size])  # fresh timestamps
                for system in systems[r % len(systems) :] + systems[: r % len(systems)]:
                    clients = str(args.clients)
                    result = loadgen(
                        servers[system].port,
                        PATHS[system],
                        "--payloads",
                        fh.name,
                        "--concurrency",
                        clients,
                    )
                    check_statuses(result, system, size)
                    result["peak_rss_mb"] = servers[system].memory_mb()
                    runs[system].append(result)
                    log(
                        f"   http-pg round {r + 1} {system}: {result['rate']:.0f}/s,"
                        f" p99 {result['p99_ms']:.1f} ms"
                    )
    finally:
        for server in servers.values():
            server.stop()
    expected = args.warmup + size * args.rounds
    for system, url in urls.items():
        rows = row_counts(system, url)
        if not (rows["handled"] == rows["handled_distinct"] == rows["events"] == expected):
            raise Failure(f"{system}: rows {rows}, expected {expected} events, one handler row")
        dbs.drop(url)
    return runs


def memory(dbs: Databases, system: str, first: int, total: int) -> dict[str, Any]:
    url = dbs.fresh(system, "postgresql")
    server = Gunicorn(system, url, 1, dbs.tmp)
    try:
        prefix = "evt_mem"
        one = loadgen(server.port, PATHS[system], "--generate", str(first))
        after_first = server.memory_mb("VmRSS")
        rest = loadgen(
            server.port,
            PATHS[system],
            "--generate",
            str(total - first),
            "--id-prefix",
            prefix,
            "--concurrency",
            "8",
        )
        after_all = server.memory_mb("VmRSS")
        peak = server.memory_mb("VmHWM")
    finally:
        server.stop()
    statuses = dict(one["statuses"])
    for k, v in rest["statuses"].items():
        statuses[k] = statuses.get(k, 0) + v
    result = {
        "deliveries": total,
        "rate": rest["rate"],
        "p50_ms": rest["p50_ms"],
        "p99_ms": rest["p99_ms"],
        "rss_after_first_mb": after_first,
        "rss_after_all_mb": after_all,
        "growth_mb": after_all - after_first,
        "peak_rss_mb": peak,
        "statuses": statuses,
        "rows": row_counts(system, url),
    }
    check(result, system, total, total)
    dbs.drop(url)
    return result


def profile(dbs: Databases, system: str, bodies: list[str], warmup: int) -> dict[str, Any]:
    """Statements and transactions per delivery on PostgreSQL, and a cProfile summary."""
    url = dbs.fresh(system, "postgresql")
    result = _driver("profile", system, url, bodies, warmup, dbs.tmp)
    dbs.drop(url)
    return result  # type: ignore[no-any-return]


def profile_table(results: list[dict[str, Any]]) -> str:
    kinds = ["SELECT", "INSERT", "UPDATE", "SAVEPOINT", "RELEASE", "COMMIT"]
    head = f"{'per delivery (PostgreSQL)':<26}" + "".join(f"{k:>10}" for k in kinds)
    head += f"{'all SQL':>10}{'transactions':>14}"
    lines = [head, "-" * len(head)]
    for r in results:
        per = r["statements_per_delivery"]
        total = sum(v for k, v in per.items() if k != "COMMIT")
        tx = r["transactions_per_delivery"]
        lines.append(
            f"{LABEL[r['system']]:<26}"
            + "".join(f"{per.get(k, 0):>10.2f}" for k in kinds)
            + f"{total:>10.2f}{tx if tx is None else format(tx, '.2f'):>14}"
        )
    lines.append(
        "(COMMIT: explicit commits the client counted; transactions: PostgreSQL's own"
        " count, autocommitted statements included)"
    )
    return "\n".join(lines)


# -- the table ---------------------------------------------------------------------------


def summarize(scenario: str, runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Medians per system, and fsh's ratio to each peer as the median over the rounds."""
    rows = []
    base = runs["fsh"]
    for system, results in runs.items():
        row: dict[str, Any] = {
            "scenario": scenario,
            "system": system,
            "rounds": len(results),
            "rate": common.median([r["rate"] for r in results]),
            "p50_ms": common.median([r["p50_ms"] for r in results]),
            "p99_ms": common.median([r["p99_ms"] for r in results]),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        }
        if "client_cpu_ms" in results[0]:  # over HTTP: the load generator's CPU per request
            row["client_cpu_ms"] = common.median([r["client_cpu_ms"] for r in results])
        if system != "fsh":
            ratios = [a["rate"] / b["rate"] for a, b in zip(base, results, strict=True)]
            row["ratio"] = common.median(ratios)
            row["ratios"] = ratios
            row["target"] = TARGETS[system]
            if scenario.startswith("http") and system in P99_TARGET:
                p99 = [b["p99_ms"] / a["p99_ms"] for a, b in zip(base, results, strict=True)]
                row["p99_ratio"] = common.median(p99)
                row["p99_target"] = P99_TARGET[system]
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]], memory_rows: list[dict[str, Any]], quick: bool) -> str:
    head = (
        f"{'scenario':<16} {'system':<19} {'rate/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'peak MB':>8}  fsh vs this (median of pairs)"
    )
    lines = [head, "-" * len(head)]
    last = None
    for row in rows:
        note = ""
        if "ratio" in row:
            ok = row["ratio"] >= row["target"]
            note = f"{row['ratio']:.2f}x rate (target >= {row['target']}x"
            note += ")" if quick else f", {'PASS' if ok else 'MISS'})"
            if "p99_ratio" in row:
                ok = row["p99_ratio"] >= row["p99_target"]
                note += f"; p99 1/{row['p99_ratio']:.2f} (target <= 1/{row['p99_target']:.0f}"
                note += ")" if quick else f", {'PASS' if ok else 'MISS'})"
        scenario = row["scenario"] if row["scenario"] != last else ""
        last = row["scenario"]
        lines.append(
            f"{scenario:<16} {LABEL[row['system']]:<19} {row['rate']:>8.0f}"
            f" {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['peak_rss_mb']:>8.1f}  {note}"
        )
    for m in memory_rows:
        ok = m["growth_mb"] <= 20
        lines.append(
            f"{'memory':<16} {LABEL[m['system']]:<19} {m['rate']:>8.0f} {m['p50_ms']:>8.2f}"
            f" {m['p99_ms']:>8.2f} {m['peak_rss_mb']:>8.1f}  worker RSS"
            f" {m['rss_after_first_mb']:.1f} MB after {m['first']:,}, {m['rss_after_all_mb']:.1f}"
            f" MB after {m['deliveries']:,}: {m['growth_mb']:+.1f} MB (target <= 20"
            + (")" if quick else f", {'PASS' if ok else 'MISS'})")
        )
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------

SCENARIOS = ["profile", "inproc-sqlite", "inproc-pg", "inproc-pg-dup20", "http-pg", "memory"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run; numbers mean nothing")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--deliveries", type=int, default=800, help="timed, in-process")
    parser.add_argument("--http-deliveries", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--memory-events", type=int, default=100_000)
    parser.add_argument("--memory-systems", default="fsh")
    parser.add_argument("--systems", default="fsh,djstripe,handwritten")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--pg-url", help="an existing PostgreSQL server (default: start one)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.deliveries, args.http_deliveries, args.warmup = 1, 20, 40, 5
        args.memory_events = 300
        args.memory_systems = args.systems
    systems = args.systems.split(",")
    if systems[0] != "fsh":
        raise SystemExit("--systems must start with fsh")
    scenarios = args.scenarios.split(",")
    first = min(1000, args.memory_events // 3)

    ensure_venvs()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    info = {"machine": common.machine(), "versions": versions(), "started": started}
    log(f"machine: {info['machine']}")
    for venv, text in info["versions"].items():
        log(f"{venv} venv: {text}")
    rows: list[dict[str, Any]] = []
    memory_rows: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    failed = False
    plain = payloads.bodies(args.deliveries + args.warmup)
    dup = payloads.bodies(args.deliveries + args.warmup, duplicates=0.2)
    web = payloads.bodies(args.http_deliveries + args.warmup, seed=8)
    log(f"in-process payloads: {payloads.describe(plain)}")
    log(f"duplicates payloads: {payloads.describe(dup)}")
    with common.postgres(args.pg_url) as pg_url, tempfile.TemporaryDirectory() as tmp:
        dbs = Databases(pg_url, Path(tmp))
        for scenario in scenarios:
            if scenario == "profile":
                for system in systems:
                    log(f"== profile: {system}")
                    try:
                        sample = plain[:400]
                        profiles.append(profile(dbs, system, sample, min(50, len(sample) // 5)))
                    except Failure as exc:
                        log(f"FAILED: {exc}")
                        failed = True
                continue
            if scenario == "memory":
                for system in args.memory_systems.split(","):
                    log(f"== memory: {system}, {args.memory_events:,} events, 1 worker")
                    try:
                        m = memory(dbs, system, first, args.memory_events)
                    except Failure as exc:
                        log(f"FAILED: {exc}")
                        failed = True
                        continue
                    m.update(system=system, first=first)
                    memory_rows.append(m)
                    log(f"   growth {m['growth_mb']:+.1f} MB")
                continue
            if scenario == "http-pg":
                try:
                    rows += summarize(scenario, http(dbs, systems, web, args))
                except Failure as exc:
                    log(f"FAILED {scenario}: {exc}")
                    failed = True
                continue
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
            for r in range(args.rounds):
                order = systems[r % len(systems) :] + systems[: r % len(systems)]
                for system in order:
                    try:
                        engine = "sqlite" if scenario == "inproc-sqlite" else "postgresql"
                        bodies = dup if scenario.endswith("dup20") else plain
                        res = inproc(dbs, system, engine, bodies, args.warmup)
                    except Failure as exc:
                        log(f"FAILED {scenario}: {exc}")
                        failed = True
                        break
                    runs[system].append(res)
                    log(
                        f"   {scenario} round {r + 1} {system}: {res['rate']:.0f}/s,"
                        f" p99 {res['p99_ms']:.1f} ms"
                    )
            if all(runs.values()) and len({len(v) for v in runs.values()}) == 1:
                rows += summarize(scenario, runs)
    print()
    print(f"machine: {info['machine']}")
    if profiles:
        print(profile_table(profiles))
        print()
    print(table(rows, memory_rows, args.quick))
    if args.quick:
        print("(--quick: a smoke run; the numbers mean nothing)")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"run-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}.json"
    out.write_text(
        json.dumps({**info, "rows": rows, "memory": memory_rows, "profiles": profiles}, indent=2)
    )
    print(f"raw results: {out.relative_to(common.ROOT)}")
    if failed:
        raise SystemExit("some runs failed (see above)")


if __name__ == "__main__":
    main()
