"""OpenTelemetry spans: one consumer span per delivery and one per run of a stored event.

Install the extra (``pip install flask-stripe-hooks[otel]``) and set
``STRIPE_HOOKS_TRACING = True``. The spans follow OpenTelemetry's messaging conventions
(``messaging.system`` ``stripe``, ``messaging.operation.type`` ``process``,
``messaging.message.id`` the event id, ``messaging.destination.name`` the event type) and
are children of the current span (Flask's request span when its instrumentation is on).
A handler's exception is recorded on the span, whose status is then an error.

The faces call :func:`receive` and :func:`process_stored` instead of the pipeline's own;
with tracing off (or opentelemetry-api absent) those are the pipeline's functions
themselves, so nothing is added to the path.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from . import processing, signals
from .models import FAILED

try:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # the extra is not installed
    trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from .outcomes import Result
    from .state import State

log = logging.getLogger("flask_stripe_hooks")

#: The span of the delivery or run in progress (so signals can add the event to it).
_span: ContextVar[Any] = ContextVar("stripe_hooks_span", default=None)
_BROKEN = (FAILED, processing.UNAVAILABLE)


def enabled(state: State) -> bool:
    """Tracing is on for this app and opentelemetry-api is installed."""
    return trace is not None and bool(state.config.get("STRIPE_HOOKS_TRACING"))


@functools.cache
def _tracer() -> Any:
    # Once: asking for a tracer costs as much as a span. A tracer got before the app sets
    # its TracerProvider follows that provider once it is set.
    return trace.get_tracer("flask_stripe_hooks")


#: The attributes every span starts with.
ATTRIBUTES = {
    "messaging.system": "stripe",
    "messaging.operation.type": "process",
    "messaging.operation.name": "process",
}


@contextmanager
def consumer_span(**attributes: str) -> Iterator[Any]:
    """A ``process stripe`` consumer span, current while the block runs."""
    with _tracer().start_as_current_span(
        "process stripe", kind=SpanKind.CONSUMER, attributes={**ATTRIBUTES, **attributes}
    ) as span:
        token = _span.set(span)
        try:
            yield span
        finally:
            _span.reset(token)


def receive(
    state: State, endpoint_uuid: uuid.UUID, body: bytes, headers: Any, remote_addr: str | None
) -> Result:
    """:func:`flask_stripe_hooks.processing.receive` in a span (the webhook view)."""
    with consumer_span(**{"stripe.endpoint": str(endpoint_uuid)}) as span:
        return _finish(span, processing.receive(state, endpoint_uuid, body, headers, remote_addr))


def process_stored(
    state: State, event_id: str, *, force: bool = False, dead: bool = False
) -> Result:
    """:func:`flask_stripe_hooks.processing.process_stored`, in a span when tracing is on."""
    if not enabled(state):
        return processing.process_stored(state, event_id, force=force, dead=dead)
    with consumer_span(**{"messaging.message.id": event_id}) as span:
        return _finish(span, processing.process_stored(state, event_id, force=force, dead=dead))


def _finish(span: Any, result: Result) -> Result:
    attributes = {"stripe.outcome": result.outcome}
    if result.event_id:
        attributes["messaging.message.id"] = result.event_id
    span.set_attributes(attributes)
    if result.outcome in _BROKEN:
        span.set_status(Status(StatusCode.ERROR, result.reason or result.outcome))
    return result


def _on_event(sender: Any, event: Any, **kwargs: Any) -> None:
    span = _span.get()
    if span is not None:
        span.set_attribute("messaging.destination.name", event.type)
        span.update_name(f"process {event.type}")
        exc = kwargs.get("exception")
        if exc is not None:
            span.record_exception(exc)


def receiver(state: State) -> Any:
    """The function the webhook view calls: :func:`receive` when tracing is on, else the
    pipeline's own (a missing opentelemetry-api is logged). Connects, once, the receivers
    that name the event on the span."""
    if not state.config.get("STRIPE_HOOKS_TRACING"):
        return processing.receive
    if trace is None:
        log.warning(
            "STRIPE_HOOKS_TRACING is on but opentelemetry-api is not installed:"
            " pip install 'flask-stripe-hooks[otel]'. Nothing is traced."
        )
        return processing.receive
    connect()
    return receive


def connect() -> None:
    """Name the event (and record a handler's exception) on the span in progress."""
    for name in signals.EVENT_OUTCOMES:
        signals.by_name(name).connect(_on_event, weak=False)


def disconnect() -> None:
    for name in signals.EVENT_OUTCOMES:
        signals.by_name(name).disconnect(_on_event)
