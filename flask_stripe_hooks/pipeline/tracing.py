"""OpenTelemetry spans: one consumer span per delivery and one per run of a stored event.

Install the extra (``pip install flask-stripe-hooks[otel]``) and set
``STRIPE_HOOKS_TRACING = True``. The spans follow OpenTelemetry's messaging conventions
(``messaging.system`` ``stripe``, ``messaging.operation.type`` ``process``,
``messaging.message.id`` the event id, ``messaging.destination.name`` the event type) and
are children of the current span (Flask's request span when its instrumentation is on).
A handler's exception is recorded on the span, whose status is then an error.

The package's way in applies it: :func:`receiver` gives the webhook view the traced
:func:`receive` when tracing is on, and the pipeline's own function otherwise, so nothing is
added to the path; :func:`process_stored` is traced when tracing is on.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .. import signals
from ..outcomes import FAILED, UNAVAILABLE
from . import intake
from .run import process_stored as run_stored

try:
    from opentelemetry import context, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # the extra is not installed
    trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from ..outcomes import Result
    from ..state import State

log = logging.getLogger("flask_stripe_hooks")

#: What the signals tell of the delivery or run in progress: set on its span when it ends.
_run: ContextVar[_Run | None] = ContextVar("stripe_hooks_traced", default=None)
_BROKEN = (FAILED, UNAVAILABLE)


class _Run:
    __slots__ = ("type", "exception")

    def __init__(self) -> None:
        self.type: str | None = None
        self.exception: BaseException | None = None


def enabled(state: State) -> bool:
    """Tracing is on for this app and opentelemetry-api is installed."""
    return trace is not None and state.tracing


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


def _traced(attributes: dict[str, str], call: Callable[..., Result], *args: Any) -> Result:
    """``call(*args)`` in a ``process stripe`` consumer span, current while it runs (a child
    of the current span). Written out rather than with ``start_as_current_span``, and what is
    learnt while it runs is set once, at the end: the span's cost is part of every
    delivery's."""
    span = _tracer().start_span("process stripe", kind=SpanKind.CONSUMER, attributes=attributes)
    run = _Run()
    token, context_token = _run.set(run), context.attach(trace.set_span_in_context(span))
    try:
        result = call(*args)
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    else:
        ended = {"stripe.outcome": result.outcome}
        if result.event_id:
            ended["messaging.message.id"] = result.event_id
        if run.type is not None:
            ended["messaging.destination.name"] = run.type
            span.update_name(f"process {run.type}")
        span.set_attributes(ended)
        if run.exception is not None:
            span.record_exception(run.exception)
        if result.outcome in _BROKEN:
            span.set_status(Status(StatusCode.ERROR, result.reason or result.outcome))
        return result
    finally:
        context.detach(context_token)
        _run.reset(token)
        span.end()


def receive(
    state: State, endpoint_uuid: uuid.UUID, body: bytes, headers: Any, remote_addr: str | None
) -> Result:
    """:func:`.intake.receive` in a span (the webhook view)."""
    attributes = {**ATTRIBUTES, "stripe.endpoint": str(endpoint_uuid)}
    return _traced(attributes, intake.receive, state, endpoint_uuid, body, headers, remote_addr)


def process_stored(
    state: State, event_id: str, *, force: bool = False, dead: bool = False
) -> Result:
    """:func:`.run.process_stored`, in a span when tracing is on."""
    if not enabled(state):
        return run_stored(state, event_id, force=force, dead=dead)
    return _traced(
        {**ATTRIBUTES, "messaging.message.id": event_id},
        functools.partial(run_stored, force=force, dead=dead),
        state,
        event_id,
    )


def _on_event(sender: Any, event: Any, **kwargs: Any) -> None:
    run = _run.get()
    if run is not None:
        run.type = event.type
        exc = kwargs.get("exception")
        if exc is not None:
            run.exception = exc


def receiver(state: State) -> Any:
    """The function the webhook view calls: :func:`receive` when tracing is on, else the
    pipeline's own (a missing opentelemetry-api is logged). Connects, once, the receivers
    that name the event on the span."""
    if not state.tracing:
        return intake.receive
    if trace is None:
        log.warning(
            "STRIPE_HOOKS_TRACING is on but opentelemetry-api is not installed:"
            " pip install 'flask-stripe-hooks[otel]'. Nothing is traced."
        )
        return intake.receive
    connect()
    return receive


def connect() -> None:
    """Name the event (and record a handler's exception) on the span in progress."""
    for name in signals.EVENT_OUTCOMES:
        signals.by_name(name).connect(_on_event, weak=False)


def disconnect() -> None:
    for name in signals.EVENT_OUTCOMES:
        signals.by_name(name).disconnect(_on_event)
