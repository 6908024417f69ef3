"""The cost of metrics and traces: deliveries with both on against both off.

    python bench/operate.py [--deliveries 4500] [--pairs 150] [--pg-url URL] [--quick]

Two apps of flask-stripe-hooks side by side, on SQLite (a file) and on PostgreSQL (a throwaway
server), paired as ``bench/ingest.py`` pairs them: one with ``STRIPE_HOOKS_METRICS`` (a fresh
``CollectorRegistry``) and ``STRIPE_HOOKS_TRACING`` (the OpenTelemetry SDK's
``TracerProvider``, spans batched to an exporter that drops them), one with neither. Before each
block of the app without them, their signal receivers are disconnected (and connected again
before the other's), so it runs as a process without the extras does. The ratio printed is the
median of the pairs, time with / time without. Target: at most 1.05x.

It also shows that with the settings off the webhook view calls the pipeline's own function and
no receiver listens, so nothing is added to the path.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import payloads  # noqa: E402
from ingest import interleaved, quick, run_arguments, summary  # noqa: E402


def tracer_provider() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)


def skipped_when_off() -> str:
    """With both settings off: the view calls the pipeline's own ``receive``, nobody listens."""
    from flask_stripe_hooks import signals
    from flask_stripe_hooks.pipeline import intake, tracing
    from flask_stripe_hooks.state import get_state

    import flask_systems

    app = flask_systems.create_fsh("sqlite://")
    with app.app_context():
        direct = tracing.receiver(get_state()) is intake.receive
    listening = sum(
        len(signals.by_name(n).receivers) for n in [*signals.EVENT_OUTCOMES, "delivery-finished"]
    )
    return (
        f"settings off: the view calls the pipeline's receive directly: {direct};"
        f" receivers on the event and delivery signals: {listening}"
    )


#: The metrics of the apps with the settings on (switched off for the other's blocks).
METRICS: list[Any] = []


def switch(enabled: bool) -> None:
    """Connect (or disconnect) the receivers of metrics and traces."""
    from flask_stripe_hooks.pipeline import tracing

    for metrics in METRICS:
        metrics.connect() if enabled else metrics.disconnect()
    tracing.connect() if enabled else tracing.disconnect()


def create_observed(url: str, **config: Any) -> Any:
    from flask_stripe_hooks.metrics import init_metrics
    from prometheus_client import CollectorRegistry

    import flask_systems

    app = flask_systems.create_fsh(url, **config)
    METRICS.append(init_metrics(app, CollectorRegistry()))  # as STRIPE_HOOKS_METRICS does
    return app


def measure(backend: str, pg_url: str, tmp: str, bodies: list[str], args: Any) -> str:
    import flask_systems

    flask_systems.FACTORIES["observed"] = create_observed  # fsh, keeping its metrics
    for table in (flask_systems.SEEDS, flask_systems.PATHS, flask_systems.EVENT_TABLES):
        table["observed"] = table["fsh"]  # type: ignore[index]
    on = {"STRIPE_HOOKS_TRACING": True}
    contenders = {"off": ("fsh", {}), "on": ("observed", on)}
    before = {"off": lambda: switch(False), "on": lambda: switch(True)}
    rates, ratios = interleaved(contenders, backend, pg_url, tmp, bodies, args, before)
    switch(False)
    METRICS.clear()
    ratio = common.median(ratios)
    low, high = common.median_interval(ratios)
    return (
        f"{backend:<10} off {rates['off']:7.0f}/s   on {rates['on']:7.0f}/s"
        f"   time with/without {ratio:.3f}x (median of {len(ratios)} pairs, 95% interval"
        f" {low:.3f}-{high:.3f})   {'PASS' if ratio <= 1.05 else 'MISS'} (target <= 1.05x)"
    )


def main() -> None:
    args = quick(run_arguments(__doc__).parse_args())
    print(f"machine: {common.machine()}")
    lines = [skipped_when_off()]
    tracer_provider()
    bodies = payloads.bodies(args.deliveries + args.warmup, seed=11)
    with common.postgres(args.pg_url) as pg_url, tempfile.TemporaryDirectory() as tmp:
        for backend in ("sqlite", "postgresql"):
            lines.append(measure(backend, pg_url, tmp, bodies, args))
            print("  " + lines[-1], flush=True)
    summary(lines, args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
