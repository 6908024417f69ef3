"""flask-stripe-hooks against the minimal hand-written receiver.

    python bench/ingest.py [--deliveries 4500] [--pairs 150] [--pg-url URL] [--quick]
    python bench/ingest.py --against REV     # this tree paired against a git revision of it

1. Signed deliveries per second through the blueprint, in-process with the Flask test client,
   on SQLite (a file) and on PostgreSQL (a throwaway server, ``tests/support/pgserver.py``), against
   ``flask_systems.create_minimal`` in the same run. Both apps live side by side, each on a
   fresh database; the deliveries go in blocks, back to back in pairs (a block to one app,
   the same block to the other, the order alternating); the ratio printed is the median of
   the pairs, with a 95% bootstrap interval of that median. Target: >= 1.0x.
2. Dispatch with 1 and with 1,000 unrelated subscriptions: ``Registry.dispatch`` alone, and the
   whole delivery on PostgreSQL. Target: per-event time within 10%.
3. The handlers' record (``--record-only`` runs just this): the same app delivering with each
   handler timed, recorded on the delivery row and flushed after it, against the same app with
   ``Registry.dispatch`` switched to a plain ``send`` (no record, no flush), in alternating
   blocks, on SQLite and PostgreSQL; first this process's CPU time per delivery, the same way,
   on SQLite in memory. Target: time ratio <= 1.02.

With ``--against REV`` it pairs this tree's flask-stripe-hooks against the same package at a git
revision (unpacked with ``git archive`` under another import name, so both run in one process),
on both databases, and prints this tree's rate as a multiple of that revision's (a change that
keeps the pipeline as fast: >= 0.98x).

Runs in the project's own environment (``pip install -e .[test]``).
"""

from __future__ import annotations

import argparse
import functools
import gc
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import flask_systems  # noqa: E402
import payloads  # noqa: E402


def fresh_db(backend: str, pg_url: str, tmp: str, name: str) -> str:
    if backend == "sqlite":
        path = Path(tmp) / f"{name}.db"
        path.unlink(missing_ok=True)
        return f"sqlite:///{path}"
    return common.create_database(pg_url, name)


#: What a block's time is read from: the wall clock, or (``--clock cpu``) this process's CPU
#: time, which a busy neighbour disturbs far less (it leaves out the database server's work).
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCK["wall"]


def deliver_all(app: Any, path: str, items: list[tuple[bytes, str]]) -> float:
    """Seconds to POST every item with the Flask test client; every answer must be 200."""
    client = app.test_client()
    headers = {"Content-Type": "application/json", "User-Agent": "Stripe/1.0"}
    post = client.post
    gc.collect()
    start = clock()
    for body, header in items:
        response = post(path, data=body, headers={**headers, "Stripe-Signature": header})
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {response.get_data(as_text=True)}")
    return clock() - start


def interleaved(
    contenders: dict[str, tuple[str, dict[str, Any]]],
    backend: str,
    pg_url: str,
    tmp: str,
    bodies: list[str],
    args: argparse.Namespace,
    before: dict[str, Callable[[], Any]] | None = None,
) -> tuple[dict[str, float], list[float]]:
    """Rates of each contender (``label: (system, factory options)``, two of them) and the
    ratios first/second of every pair. ``before[label]()`` runs before each of that
    contender's blocks (and its warm-up), to switch a setting of the process for it.

    Both apps are built on fresh databases of their own and live side by side; the timed
    deliveries go in blocks, each block to one app and then the same block to the other (the
    order alternating), so that the machine's drift, which is large on a shared machine,
    falls on both alike. A pair is one block each.
    """
    items = [(b.encode(), h) for b, h in payloads.signed(bodies)]
    before = before or {}
    apps = {}
    for label, (system, options) in contenders.items():
        url = fresh_db(backend, pg_url, tmp, f"ingest_{label}_{backend}")
        apps[label] = flask_systems.FACTORIES[system](url, **options)
        flask_systems.SEEDS[system](apps[label])
        if label in before:
            before[label]()
        deliver_all(apps[label], flask_systems.PATHS[system], items[: args.warmup])
    timed = items[args.warmup :]
    size = max(1, len(timed) // args.pairs)
    seconds: dict[str, float] = dict.fromkeys(contenders, 0.0)
    ratios = []
    first, second = contenders
    for i in range(args.pairs):
        block = timed[i * size : (i + 1) * size]
        got = {}
        for label in (first, second) if i % 2 == 0 else (second, first):
            system = contenders[label][0]
            if label in before:
                before[label]()
            got[label] = deliver_all(apps[label], flask_systems.PATHS[system], block)
            seconds[label] += got[label]
        ratios.append(got[second] / got[first])
    for label, (system, _) in contenders.items():
        expected = args.warmup + size * args.pairs
        counts = flask_systems.counts(apps[label], system)
        if counts["handled"] != expected or counts["handled_distinct"] != expected:
            raise SystemExit(f"{label}: handler rows {counts}, expected {expected}")
        with apps[label].app_context():
            apps[label].extensions["sqlalchemy"].engine.dispose()
        if backend == "postgresql":
            common.drop_database(pg_url, f"ingest_{label}_{backend}")
    rates = {label: size * args.pairs / seconds[label] for label in contenders}
    return rates, ratios


def ingest(args: argparse.Namespace, pg_url: str, tmp: str) -> list[str]:
    bodies = payloads.bodies(args.deliveries + args.warmup)
    print(f"payloads: {payloads.describe(bodies)}")
    lines = []
    for backend in ("sqlite", "postgresql"):
        contenders = {"fsh": ("fsh", {}), "minimal": ("minimal", {})}
        rates, ratios = interleaved(contenders, backend, pg_url, tmp, bodies, args)
        ratio = common.median(ratios)
        low, high = common.median_interval(ratios)
        lines.append(
            f"{backend:<10} fsh {rates['fsh']:7.0f}/s   minimal {rates['minimal']:7.0f}/s"
            f"   ratio {ratio:.3f}x (median of {len(ratios)} pairs, 95% interval"
            f" {low:.3f}-{high:.3f}, pairs from {min(ratios):.2f} to {max(ratios):.2f};"
            f" total rates {rates['fsh'] / rates['minimal']:.3f}x)"
            f"   {'PASS' if ratio >= 1.0 else 'MISS'} (target >= 1.0x)"
        )
        print("  " + lines[-1], flush=True)
    return lines


def dispatch_only(rounds: int, per_round: int) -> list[str]:
    """ns per ``Registry.dispatch`` call with 1 vs 1,000 unrelated subscriptions."""
    from flask_stripe_hooks.events import Event
    from flask_stripe_hooks.pipeline.dispatch import Registry

    events = [
        Event(id=f"evt_{i}", type=t, livemode=False, data={"object": {}})
        for i, t in enumerate(payloads.TYPES * 20)
    ]

    def registry(unrelated: int) -> Registry:
        reg = Registry()
        reg.on(*payloads.TYPES)(lambda event, **kw: None)
        for i in range(unrelated):
            reg.signal(f"unrelated{i}.created").connect(lambda event, **kw: None, weak=False)
        return reg

    regs = {1: registry(1), 1000: registry(1000)}
    timings: dict[int, list[float]] = {1: [], 1000: []}
    ratios = []
    for r in range(rounds):
        got = {}
        for n in (1, 1000) if r % 2 == 0 else (1000, 1):
            dispatch = regs[n].dispatch
            start = time.perf_counter_ns()
            for _ in range(per_round):
                for event in events:
                    dispatch(event)
            got[n] = (time.perf_counter_ns() - start) / (per_round * len(events))
            timings[n].append(got[n])
        ratios.append(got[1000] / got[1])
    ratio = common.median(ratios)
    return [
        f"Registry.dispatch: {common.median(timings[1]):.0f} ns/event with 1 unrelated"
        f" subscription, {common.median(timings[1000]):.0f} ns with 1,000:"
        f" {ratio:.3f}x   {'PASS' if ratio <= 1.10 else 'MISS'} (target within 10%)"
    ]


def dispatch_delivery(args: argparse.Namespace, pg_url: str, tmp: str) -> list[str]:
    """The whole delivery on PostgreSQL, 1 vs 1,000 unrelated subscriptions, interleaved."""
    bodies = payloads.bodies(args.deliveries + args.warmup, seed=6)
    contenders = {"1": ("fsh", {"unrelated": 1}), "1000": ("fsh", {"unrelated": 1000})}
    rates, ratios = interleaved(contenders, "postgresql", pg_url, tmp, bodies, args)
    ratio = common.median(ratios)  # time per event with 1,000 / with 1
    return [
        f"whole delivery (PostgreSQL): {1000 / rates['1']:.3f} ms/event with 1 unrelated"
        f" subscription, {1000 / rates['1000']:.3f} ms with 1,000:"
        f" {ratio:.3f}x (median of {len(ratios)} pairs)"
        f"   {'PASS' if ratio <= 1.10 else 'MISS'} (target within 10%)"
    ]


def handler_record(args: argparse.Namespace, pg_url: str, tmp: str) -> list[str]:
    """Deliveries with the handlers' record (timed, recorded, flushed after each) against
    the same app with ``Registry.dispatch`` as a plain ``send`` to each signal."""
    from flask_stripe_hooks.pipeline.dispatch import Registry

    recording = Registry.dispatch

    def plain(self: Any, event: Any, *, ran: Any = None, after_each: Any = None, **kw: Any) -> Any:
        for sig in self.signals_for(event.type):
            if sig.receivers:
                sig.send(event, **kw)
        return []

    def set_plain() -> None:
        Registry.dispatch = plain  # type: ignore[method-assign]

    def set_recording() -> None:
        Registry.dispatch = recording  # type: ignore[method-assign]

    bodies = payloads.bodies(args.deliveries + args.warmup, seed=7)
    contenders = {"plain": ("fsh", {}), "recording": ("fsh", {})}
    before = {"plain": set_plain, "recording": set_recording}
    lines = []
    try:
        lines.append(record_work(plain, recording))
        print("  " + lines[-1], flush=True)
        lines.append(record_cpu(bodies, set_plain, set_recording, args))
        print("  " + lines[-1], flush=True)
        for backend in getattr(args, "backends", "sqlite,postgresql").split(","):
            rates, ratios = interleaved(contenders, backend, pg_url, tmp, bodies, args, before)
            ratio = common.median(ratios)  # time with the record / without
            low, high = common.median_interval(ratios)
            lines.append(
                f"{backend:<10} handlers' record: {rates['recording']:7.0f}/s, without"
                f" {rates['plain']:7.0f}/s: time ratio {ratio:.3f}x (median of {len(ratios)}"
                f" pairs, 95% interval {low:.3f}-{high:.3f})"
                f"   {'PASS' if ratio <= 1.02 else 'MISS'} (target <= 1.02x)"
            )
            print("  " + lines[-1], flush=True)
    finally:
        set_recording()
    return lines


def record_work(plain: Callable[..., Any], recording: Callable[..., Any]) -> str:
    """What the record adds to one event, alone: ``Registry.dispatch`` with two handlers,
    timed and recorded, a flush of a clean session after each, and the record as the JSON the
    delivery row gets, against a plain ``send`` and ``[]``; the least of 7 repeats of 20,000
    (the least is what the code costs; a busy machine only adds to it)."""
    import json
    import timeit

    from flask_stripe_hooks.events import Event
    from flask_stripe_hooks.pipeline.dispatch import Registry
    from sqlalchemy.orm import Session

    registry = Registry()
    registry.on("customer.created")(lambda event, **kw: None)
    registry.on("customer")(lambda event, **kw: None)
    event = Event(id="evt_1", type="customer.created", livemode=False, data={"object": {}})
    session = Session()

    def with_record() -> None:
        ran: list[Any] = []
        recording(registry, event, ran=ran, after_each=session.flush, endpoint=None)
        json.dumps(ran)

    def without() -> None:
        plain(registry, event, endpoint=None)
        json.dumps([])

    n = 20_000
    best = {
        name: min(timeit.repeat(fn, number=n, repeat=7)) / n
        for name, fn in (("with", with_record), ("without", without))
    }
    return (
        f"the record's own work per event (two handlers): {best['with'] * 1e6:.1f} us with,"
        f" {best['without'] * 1e6:.1f} us without: {(best['with'] - best['without']) * 1e6:+.1f}"
        " us (least of 7 repeats)"
    )


def record_cpu(
    bodies: list[str],
    set_plain: Callable[[], Any],
    set_recording: Callable[[], Any],
    args: argparse.Namespace,
) -> str:
    """This process's CPU time per delivery (``time.process_time``: what the record adds is
    CPU work here, and CPU time is far less disturbed than wall time by other work on a
    shared machine), with and without the record, on one app with SQLite in memory, in
    alternating blocks; the ratio is the median of the pairs. SQLite in memory makes the
    delivery cheaper than any real one, so the share is an upper bound."""
    items = [(b.encode(), h) for b, h in payloads.signed(bodies)]
    app = flask_systems.FACTORIES["fsh"]("sqlite://")
    flask_systems.SEEDS["fsh"](app)
    client = app.test_client()
    headers = {"Content-Type": "application/json", "User-Agent": "Stripe/1.0"}
    path = flask_systems.PATHS["fsh"]

    def block(chunk: list[tuple[bytes, str]]) -> float:
        gc.collect()
        start = time.process_time()
        for body, header in chunk:
            response = client.post(path, data=body, headers={**headers, "Stripe-Signature": header})
            if response.status_code != 200:
                raise SystemExit(f"{response.status_code} {response.get_data(as_text=True)}")
        return (time.process_time() - start) / len(chunk)

    block(items[: args.warmup])
    timed = items[args.warmup :]
    size = max(1, len(timed) // (2 * args.pairs))
    cpu: dict[str, list[float]] = {"plain": [], "recording": []}
    ratios = []
    for i in range(args.pairs):
        got = {}
        chunk = timed[2 * i * size : (2 * i + 2) * size]
        order = (("plain", set_plain), ("recording", set_recording))
        for n, (label, switch_to) in enumerate(order if i % 2 == 0 else order[::-1]):
            switch_to()
            got[label] = block(chunk[n * size : (n + 1) * size])
            cpu[label].append(got[label])
        ratios.append(got["recording"] / got["plain"])
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()
    plain, recording = sum(cpu["plain"]) / args.pairs, sum(cpu["recording"]) / args.pairs
    low, high = common.median_interval(ratios)
    return (
        f"CPU in this process (SQLite in memory): {recording * 1e6:.0f} us per delivery"
        f" with the record, {plain * 1e6:.0f} us without: {(recording - plain) * 1e6:+.1f} us"
        f" ({recording / plain:.3f}x of the totals; median of {len(ratios)} pairs"
        f" {common.median(ratios):.3f}x, 95% interval {low:.3f}-{high:.3f})"
    )


def run_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The options of a paired run (this script's and those built on :func:`interleaved`)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=4500, help="timed, per run")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=150, help="blocks per contender")
    parser.add_argument("--pg-url", help="an existing PostgreSQL server (default: start one)")
    parser.add_argument("--quick", action="store_true", help="a smoke run; numbers mean nothing")
    parser.add_argument(
        "--clock", choices=CLOCK, default="wall", help="cpu: this process's CPU time per block"
    )
    return parser


def quick(args: argparse.Namespace) -> argparse.Namespace:
    global clock
    clock = CLOCK[args.clock]
    if args.quick:
        args.deliveries, args.warmup, args.pairs = 30, 5, 2
    return args


def prepare(doc: str | None, backends: str) -> tuple[argparse.Namespace, list[str]]:
    """A paired run's arguments (with ``--backends``) and payloads, with the machine and the
    payloads described first."""
    parser = run_arguments(doc)
    parser.add_argument("--backends", default=backends)
    args = quick(parser.parse_args())
    print(f"machine: {common.machine()}")
    bodies = payloads.bodies(args.deliveries + args.warmup)
    print(f"payloads: {payloads.describe(bodies)}")
    return args, bodies


def paired_main(
    doc: str | None,
    contenders: dict[str, tuple[str, dict[str, Any]]],
    line: Callable[[dict[str, float], float, float, float], str],
    *,
    before: dict[str, Callable[[], Any]] | None = None,
    backends: str = "sqlite,postgresql",
) -> None:
    """A script that pairs two contenders (:func:`interleaved`) on each backend and prints,
    per backend, ``line(rates, median ratio, interval low, interval high)``."""
    args, bodies = prepare(doc, backends)
    first = next(iter(contenders))
    with common.postgres(args.pg_url) as pg_url, tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            rates, ratios = interleaved(contenders, backend, pg_url, tmp, bodies, args, before)
            if before and first in before:
                before[first]()  # the process left as the first contender has it
            low, high = common.median_interval(ratios)
            text = line(rates, common.median(ratios), low, high)
            print(f"{backend:<10} {text} (median of {len(ratios)} pairs)", flush=True)
    if args.quick:
        print("(--quick: a smoke run; the numbers mean nothing)")


def switch(
    doc: str | None,
    on: tuple[str, Callable[[], Any]],
    off: tuple[str, Callable[[], Any]],
    *,
    target: float | None = None,
) -> None:
    """:func:`paired_main` for one app against itself with a setting of the process switched:
    ``on``/``off`` are ``(label, function that sets it)``; the ratio is (time with it on) /
    (time with it off), PASS/MISS against ``target`` (the highest ratio allowed) when given."""
    (on_label, set_on), (off_label, set_off) = on, off

    def line(rates: dict[str, float], ratio: float, low: float, high: float) -> str:
        verdict = ""
        if target is not None:
            verdict = f"   {'PASS' if ratio <= target else 'MISS'} (target <= {target:.2f}x)"
        return (
            f"{on_label} {rates[on_label]:7.0f}/s   {off_label} {rates[off_label]:7.0f}/s"
            f"   time ratio {ratio:.3f}x, 95% interval {low:.3f}-{high:.3f}{verdict}"
        )

    contenders = {off_label: ("fsh", {}), on_label: ("fsh", {})}  # the ratio: on / off
    paired_main(doc, contenders, line, before={off_label: set_off, on_label: set_on})


def summary(lines: list[str], args: argparse.Namespace) -> None:
    """The result lines again, together, at the end of a run."""
    print()
    print("\n".join(lines))
    if args.quick:
        print("(--quick: a smoke run; the numbers mean nothing)")


def unpack_revision(rev: str, into: str) -> str:
    """``flask_stripe_hooks`` at git revision ``rev``, unpacked under ``into`` as the package
    ``flask_stripe_hooks_at_rev`` (its imports are relative, so it runs beside this tree's);
    its import name."""
    name = "flask_stripe_hooks_at_rev"
    archive = subprocess.run(
        ["git", "archive", rev, "flask_stripe_hooks"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (Path(into) / "flask_stripe_hooks").rename(Path(into) / name)
    sys.path.insert(0, into)
    return name


def against(args: argparse.Namespace, pg_url: str, tmp: str) -> list[str]:
    """This tree's pipeline paired against ``args.against``'s, on both databases."""
    package = unpack_revision(args.against, tmp)
    flask_systems.FACTORIES["base"] = functools.partial(flask_systems.create_fsh, package=package)
    flask_systems.SEEDS["base"] = flask_systems.seed_fsh
    flask_systems.PATHS["base"] = flask_systems.PATHS["fsh"]
    flask_systems.EVENT_TABLES["base"] = flask_systems.EVENT_TABLES["fsh"]
    bodies = payloads.bodies(args.deliveries + args.warmup)
    lines = []
    for backend in ("sqlite", "postgresql"):
        contenders = {"this": ("fsh", {}), "base": ("base", {})}
        rates, ratios = interleaved(contenders, backend, pg_url, tmp, bodies, args)
        ratio = common.median(ratios)  # time at REV / time here: this tree's rate, as a multiple
        low, high = common.median_interval(ratios)
        lines.append(
            f"{backend:<10} this tree {rates['this']:7.0f}/s"
            f"   {args.against} {rates['base']:7.0f}/s"
            f"   this tree's rate {ratio:.3f}x (median of {len(ratios)} pairs, 95% interval"
            f" {low:.3f}-{high:.3f})   {'PASS' if ratio >= 0.98 else 'MISS'} (target >= 0.98x)"
        )
        print("  " + lines[-1], flush=True)
    return lines


def main() -> None:
    parser = run_arguments(__doc__)
    parser.add_argument("--skip-dispatch", action="store_true")
    parser.add_argument("--against", metavar="REV", help="pair against a git revision instead")
    parser.add_argument("--record-only", action="store_true", help="only part 3")
    parser.add_argument("--backends", default="sqlite,postgresql", help="of part 3")
    args = quick(parser.parse_args())
    print(f"machine: {common.machine()}")
    if args.against:
        with common.postgres(args.pg_url) as pg_url, tempfile.TemporaryDirectory() as tmp:
            summary(against(args, pg_url, tmp), args)
        return
    with common.postgres(args.pg_url) as pg_url, tempfile.TemporaryDirectory() as tmp:
        if args.record_only:
            summary(handler_record(args, pg_url, tmp), args)
            return
        lines = ingest(args, pg_url, tmp)
        if not args.skip_dispatch:
            lines += dispatch_only(3 if args.quick else 7, 5 if args.quick else 200)
            lines += dispatch_delivery(args, pg_url, tmp)
        lines += handler_record(args, pg_url, tmp)
    summary(lines, args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
