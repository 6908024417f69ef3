"""Prometheus metrics, from the lifecycle signals (:mod:`flask_stripe_hooks.signals`).

Install the extra (``pip install flask-stripe-hooks[metrics]``) and set
``STRIPE_HOOKS_METRICS = True``; ``init_app`` then calls :func:`init_metrics`. Without
prometheus_client installed it logs a warning and does nothing. The metrics:

- ``stripe_hooks_deliveries_total{outcome}``: every webhook request, by outcome
  (``processed``, ``duplicate``, ``queued``, ``rejected``, ``failed``, ``missing``,
  ``busy``, ``unavailable``, and ``retrying``, ``ignored``, ``dead`` where retries exist).
- ``stripe_hooks_events_total{type,outcome}``: events run (deliveries, workers, recovery).
- ``stripe_hooks_handler_duration_seconds{type}``: handler time of processed events.
- ``stripe_hooks_publish_failures_total``: queue mode's failed hand-overs: a message the
  Celery integration could not send (the broker refused or did not answer in time), or a
  callback that raised. The events stay pending.
- ``stripe_hooks_pending_events`` and ``stripe_hooks_oldest_pending_age_seconds``: read
  from the database at scrape time (:func:`register_collector`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from flask import Flask

from . import signals
from .models import event_table
from .outcomes import PENDING
from .state import get_state
from .utils import aware, utcnow

try:
    import prometheus_client
    from prometheus_client.core import GaugeMetricFamily
except ImportError:  # the extra is not installed
    prometheus_client = None  # type: ignore[assignment]

log = logging.getLogger("flask_stripe_hooks")

#: OpenTelemetry's recommended buckets for a duration in seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


class Metrics:
    """The counters and histogram of one app, and the receivers that feed them."""

    def __init__(self, app: Flask, registry: Any) -> None:
        pc = prometheus_client
        self.deliveries = pc.Counter(
            "stripe_hooks_deliveries",
            "Webhook deliveries by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.events = pc.Counter(
            "stripe_hooks_events",
            "Stripe events run, by type and outcome.",
            ["type", "outcome"],
            registry=registry,
        )
        self.duration = pc.Histogram(
            "stripe_hooks_handler_duration_seconds",
            "Time the handlers of a processed event took.",
            ["type"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.publish_failures = pc.Counter(
            "stripe_hooks_publish_failures",
            "Failed hand-overs to the queue; their events stay pending.",
            registry=registry,
        )
        self.app = app
        self._deliveries: dict[str, Any] = {}
        self._durations: dict[str, Any] = {}
        self.receivers = [
            (signals.delivery_finished, self.on_delivery),
            (signals.publish_failed, self.on_publish_failed),
        ] + [
            (signals.by_name(name), self._on_event(outcome))
            for name, outcome in signals.EVENT_OUTCOMES.items()
        ]
        self.connect()

    def connect(self) -> None:
        """Count this app's deliveries and events (done on creation)."""
        for signal, receiver in self.receivers:
            signal.connect(receiver, sender=self.app, weak=False)

    def disconnect(self) -> None:
        """Stop counting (the metrics keep their values)."""
        for signal, receiver in self.receivers:
            signal.disconnect(receiver, sender=self.app)

    # The labelled children are kept by label: ``labels()`` costs more than the increment.

    def on_delivery(self, sender: Any, result: Any, **kwargs: Any) -> None:
        counter = self._deliveries.get(result.outcome)
        if counter is None:
            counter = self._deliveries[result.outcome] = self.deliveries.labels(result.outcome)
        counter.inc()

    def on_publish_failed(self, sender: Any, **kwargs: Any) -> None:
        self.publish_failures.inc()

    def _on_event(self, outcome: str) -> Any:
        counters: dict[str, Any] = {}
        durations = self._durations

        def receiver(sender: Any, event: Any, **kwargs: Any) -> None:
            counter = counters.get(event.type)
            if counter is None:
                counter = counters[event.type] = self.events.labels(event.type, outcome)
            counter.inc()
            duration_ms = kwargs.get("duration_ms")
            if duration_ms is not None:
                histogram = durations.get(event.type)
                if histogram is None:
                    histogram = durations[event.type] = self.duration.labels(event.type)
                histogram.observe(duration_ms / 1000)

        return receiver


class PendingCollector:
    """``stripe_hooks_pending_events`` and ``stripe_hooks_oldest_pending_age_seconds``,
    queried from the app's database on each scrape (one indexed query)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def describe(self) -> Iterator[Any]:
        yield GaugeMetricFamily("stripe_hooks_pending_events", "Events stored as pending.")
        yield GaugeMetricFamily(
            "stripe_hooks_oldest_pending_age_seconds", "Age of the oldest pending event."
        )

    def collect(self) -> Iterator[Any]:
        try:
            with self.app.app_context():
                session = get_state().db.session
                count, oldest = session.execute(
                    sa.select(sa.func.count(), sa.func.min(event_table.c.received_at)).where(
                        event_table.c.status == PENDING
                    )
                ).one()
        except Exception:
            log.exception("metrics: could not read pending events")
            return
        age = 0.0
        if oldest is not None:
            age = max((utcnow() - aware(oldest)).total_seconds(), 0.0)
        pending, oldest_age = self.describe()
        pending.add_metric([], count)
        oldest_age.add_metric([], age)
        yield pending
        yield oldest_age


def register_collector(app: Flask, registry: Any = None) -> PendingCollector:
    """Register the pending-event gauges of ``app`` on ``registry`` (default: the global one)."""
    collector = PendingCollector(app)
    (registry or prometheus_client.REGISTRY).register(collector)
    return collector


def init_metrics(app: Flask, registry: Any = None) -> Metrics | None:
    """Count deliveries and events of ``app`` on ``registry`` (default: the global one) and
    register the pending gauges; None when prometheus_client is not installed. Call it after
    ``init_app`` for a registry of your own (``STRIPE_HOOKS_METRICS`` off)."""
    if prometheus_client is None:
        log.warning(
            "STRIPE_HOOKS_METRICS is on but prometheus_client is not installed:"
            " pip install 'flask-stripe-hooks[metrics]'. No metrics are collected."
        )
        return None
    registry = registry or prometheus_client.REGISTRY
    metrics = Metrics(app, registry)
    register_collector(app, registry)
    app.extensions["stripe_hooks_metrics"] = metrics
    return metrics
