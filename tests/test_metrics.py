"""Prometheus metrics and OpenTelemetry spans, after real deliveries of every outcome."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask, current_app
from flask_stripe_hooks import StripeHooks
from flask_stripe_hooks.metrics import init_metrics
from flask_stripe_hooks.pipeline import tracing
from flask_stripe_hooks.testing import build_event, create_endpoint, deliver, new_secret
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from support.helpers import record

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def tracer_provider() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the scrape, as Prometheus reads it."""
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def handlers(hooks: StripeHooks) -> None:
    @hooks.on("customer")
    def ok(event: Any, **kwargs: Any) -> None:
        record(current_app, event.id)

    @hooks.on("invoice")
    def broken(event: Any, **kwargs: Any) -> None:
        raise RuntimeError("handler broke")


def test_metrics_after_deliveries_of_every_outcome(app_factory: Any, hooks: StripeHooks) -> None:
    handlers(hooks)
    registry = CollectorRegistry()
    app = app_factory()
    init_metrics(app, registry)  # a registry of its own: the set-up's argument
    secret = new_secret()
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"], secret=secret)
    client = app.test_client()
    created = build_event("customer.created")
    assert deliver(client, endpoint, created, secret=secret).status_code == 200
    assert deliver(client, endpoint, created, secret=secret).status_code == 200  # duplicate
    assert deliver(client, endpoint, build_event("invoice.paid"), secret=secret).status_code == 500
    assert deliver(client, endpoint, created, secret=new_secret()).status_code == 400
    missing = client.post(
        f"/stripe/webhook/{uuid.uuid4()}/", data=b"{}", headers={"Stripe-Signature": "t=1,v1=00"}
    )
    assert missing.status_code == 404

    got = samples(registry)
    for outcome, n in {
        "processed": 1,
        "duplicate": 1,
        "failed": 1,
        "rejected": 1,
        "missing": 1,
    }.items():
        assert got[("stripe_hooks_deliveries_total", (("outcome", outcome),))] == n
    assert (
        got[("stripe_hooks_events_total", (("outcome", "processed"), ("type", "customer.created")))]
        == 1
    )
    assert (
        got[("stripe_hooks_events_total", (("outcome", "duplicate"), ("type", "customer.created")))]
        == 1
    )
    assert (
        got[("stripe_hooks_events_total", (("outcome", "failed"), ("type", "invoice.paid")))] == 1
    )
    count = ("stripe_hooks_handler_duration_seconds_count", (("type", "customer.created"),))
    assert got[count] == 1
    assert (
        "stripe_hooks_handler_duration_seconds_bucket",
        (("le", "0.075"), ("type", "customer.created")),
    ) in got
    assert got[("stripe_hooks_pending_events", ())] == 0
    assert got[("stripe_hooks_oldest_pending_age_seconds", ())] == 0

    # Queue mode: queued deliveries, and the pending gauges read from the database.
    queue_registry = CollectorRegistry()
    queued: list[str] = []
    queue_app = app_factory(STRIPE_HOOKS_EVENT_CALLBACK=queued.append)
    init_metrics(queue_app, queue_registry)
    queue_client = queue_app.test_client()
    assert (
        deliver(queue_client, endpoint, build_event("customer.updated"), secret=secret).status_code
        == 200
    )
    got = samples(queue_registry)
    assert got[("stripe_hooks_deliveries_total", (("outcome", "queued"),))] == 1
    assert got[("stripe_hooks_pending_events", ())] == 1
    assert 0 <= got[("stripe_hooks_oldest_pending_age_seconds", ())] < 60
    with queue_app.app_context():
        assert queue_app.extensions["stripe_hooks"].hooks.process_stored(queued[0]).ok
    got = samples(queue_registry)
    assert got[("stripe_hooks_pending_events", ())] == 0
    assert (
        got[("stripe_hooks_events_total", (("outcome", "processed"), ("type", "customer.updated")))]
        == 1
    )
    # The first app's registry saw nothing of the second app.
    assert ("stripe_hooks_deliveries_total", (("outcome", "queued"),)) not in samples(registry)


def test_spans_follow_the_messaging_conventions(app_factory: Any, hooks: StripeHooks) -> None:
    handlers(hooks)
    queued: list[str] = []
    app = app_factory(STRIPE_HOOKS_TRACING=True, STRIPE_HOOKS_EVENT_CALLBACK=None)
    queue_app = app_factory(STRIPE_HOOKS_TRACING=True, STRIPE_HOOKS_EVENT_CALLBACK=queued.append)
    secret = new_secret()
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"], secret=secret)
    EXPORTER.clear()
    tracer = trace.get_tracer("test")
    created, paid = build_event("customer.created"), build_event("invoice.paid")
    with tracer.start_as_current_span("POST /stripe/webhook") as request_span:
        assert deliver(app.test_client(), endpoint, created, secret=secret).status_code == 200
    assert deliver(app.test_client(), endpoint, paid, secret=secret).status_code == 500
    assert (
        deliver(
            queue_app.test_client(), endpoint, build_event("customer.deleted"), secret=secret
        ).status_code
        == 200
    )
    with queue_app.app_context():
        assert queue_app.extensions["stripe_hooks"].hooks.process_stored(queued[0]).ok

    spans = [s for s in EXPORTER.get_finished_spans() if s.name.startswith("process")]
    names = [s.name for s in spans]
    assert names == [
        "process customer.created",
        "process invoice.paid",
        "process customer.deleted",  # the delivery that queued it
        "process customer.deleted",  # the worker's run
    ]
    ok, failed, queued_span, run = spans
    assert ok.kind == SpanKind.CONSUMER
    assert ok.parent is not None and ok.parent.span_id == request_span.get_span_context().span_id
    wanted = {
        "messaging.system": "stripe",
        "messaging.operation.type": "process",
        "messaging.message.id": created["id"],
        "messaging.destination.name": "customer.created",
    }
    assert {k: ok.attributes.get(k) for k in wanted} == wanted
    assert ok.status.status_code != StatusCode.ERROR
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["messaging.message.id"] == paid["id"]
    assert [e.attributes["exception.message"] for e in failed.events if e.name == "exception"] == [
        "handler broke"
    ]
    assert run.attributes["messaging.message.id"] == queued[0]
    assert run.attributes["stripe.outcome"] == "processed"


def test_with_tracing_off_the_view_calls_the_pipeline_itself(app: Flask) -> None:
    from flask_stripe_hooks.pipeline import intake

    state = app.extensions["stripe_hooks"]
    assert tracing.receiver(state) is intake.receive
    secret = new_secret()
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"], secret=secret)
    EXPORTER.clear()
    event = build_event("customer.created")
    assert deliver(app.test_client(), endpoint, event, secret=secret).status_code == 200
    assert [s.name for s in EXPORTER.get_finished_spans() if s.name.startswith("process")] == []


def test_an_error_out_of_the_pipeline_is_recorded_on_its_span(
    app_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a handler's failure (that is an outcome) but the pipeline itself raising: the span
    still ends, as an error, with the exception, and no span stays current."""
    from flask_stripe_hooks.pipeline import intake

    app = app_factory(STRIPE_HOOKS_TRACING=True)
    secret = new_secret()
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"], secret=secret)

    def broken(*args: Any) -> Any:
        raise LookupError("pipeline broke")

    monkeypatch.setattr(intake, "receive", broken)
    EXPORTER.clear()
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = deliver(app.test_client(), endpoint, build_event("customer.created"), secret=secret)
    assert response.status_code == 500
    (span,) = [s for s in EXPORTER.get_finished_spans() if s.name.startswith("process")]
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["stripe.endpoint"] == str(endpoint.uuid)
    assert [e.attributes["exception.type"] for e in span.events] == ["LookupError"]
    assert not trace.get_current_span().get_span_context().is_valid
