"""The handler registry: one named blinker signal per subscription, matched by segment prefix;
and :class:`NotificationHandler`, which runs a stripe-python notification handler as one.

``on("customer")`` connects to the signal named ``customer``. An event of type
``customer.subscription.updated`` is sent to the signals ``*``, ``customer``,
``customer.subscription`` and ``customer.subscription.updated``, in that order, when they
exist: a few dictionary look-ups that grow with the depth of the type, never with the number
of subscriptions.

Each handler is timed as it runs, for the record of what an attempt ran (``ran``), and
:meth:`Registry.handlers_for` lists what a type would run.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from blinker import Signal

from .. import event_types
from ..errors import UnknownEventTypeWarning

F = TypeVar("F", bound=Callable[..., Any])


class _OrderedSet(dict[Any, None]):
    """The set blinker keeps receiver ids in, ordered by insertion.

    blinker calls receivers in the iteration order of ``Signal.set_class``; a plain set
    would call them in hash order. Only the operations blinker uses are provided.
    """

    def add(self, item: Any) -> None:
        self[item] = None

    def discard(self, item: Any) -> None:
        self.pop(item, None)

    def copy(self) -> _OrderedSet:
        return _OrderedSet(self)

    def __or__(self, other: Iterable[Any]) -> _OrderedSet:  # type: ignore[override]
        merged = _OrderedSet(self)
        for item in other:
            merged[item] = None
        return merged


class HandlerSignal(Signal):
    """A blinker signal that calls its receivers in the order they were connected, named
    by what it subscribes to (``customer``, ``*``)."""

    set_class = _OrderedSet  # type: ignore[assignment]

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self.name = name


class Registry:
    """Named signals, held strongly, and the per-type list of signals to send."""

    def __init__(self) -> None:
        self._signals: dict[str, HandlerSignal] = {}
        self._routes: dict[str, tuple[HandlerSignal, ...]] = {}

    def signal(self, name: str) -> HandlerSignal:
        """The signal for ``name`` (an event type, a prefix of one, or ``*``)."""
        sig = self._signals.get(name)
        if sig is None:
            sig = self._signals[name] = HandlerSignal(name)
            self._routes.clear()
        return sig

    def on(self, *names: str, latest_only: bool = False) -> Callable[[F], F]:
        """Decorator: call the function for events of these types or below them.

        ``latest_only``: skip an event that is stale (``event.is_stale``: a newer event
        about the same object was processed first)."""
        if not names:
            raise TypeError("on() needs at least one event type, a prefix, or '*'.")
        for name in names:
            _check_name(name)

        def decorator(fn: F) -> F:
            receiver: Callable[..., Any] = LatestOnly(fn) if latest_only else fn
            for name in names:
                # weak=False: a handler defined inside a function must not vanish.
                self.signal(_normalize(name)).connect(receiver, weak=False)
            return fn

        return decorator

    def signals_for(self, event_type: str) -> tuple[HandlerSignal, ...]:
        route = self._routes.get(event_type)
        if route is None:
            route = self._routes[event_type] = tuple(self._walk(event_type))
        return route

    def _walk(self, event_type: str) -> Iterator[HandlerSignal]:
        signals = self._signals
        if "*" in signals:
            yield signals["*"]
        parts = event_type.split(".")
        for i in range(1, len(parts) + 1):
            sig = signals.get(".".join(parts[:i]))
            if sig is not None:
                yield sig

    def dispatch(
        self,
        event: Any,
        *,
        ran: list[dict[str, Any]] | None = None,
        after_each: Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Call every handler for ``event.type``, in order; the first exception propagates.
        Returns the names of the ``latest_only`` handlers skipped because the event is stale.

        ``after_each()`` runs after each handler (the pipeline flushes the session there, so
        a failure of a handler's writes is that handler's); ``ran`` gets, in order, each
        handler's name and milliseconds (``{"name", "ms"}``), with ``"error"`` on the one
        that raised (and ``"flushed": True`` when its ``after_each`` did) and
        ``"skipped": "stale"`` on those skipped.
        """
        skipped: list[str] = []
        stale = event.is_stale
        clock = time.perf_counter
        for sig in self.signals_for(event.type):
            if not sig.receivers or sig.is_muted:
                continue
            for receiver in sig.receivers_for(event):
                if stale and isinstance(receiver, LatestOnly):
                    skipped.append(receiver.name)
                    if ran is not None:
                        ran.append({"name": receiver.name, "skipped": "stale"})
                    continue
                started = clock()
                try:
                    receiver(event, **kwargs)
                except BaseException as exc:
                    _failed(ran, receiver, started, exc)
                    raise
                if after_each is not None:
                    try:
                        after_each()
                    except BaseException as exc:
                        _failed(ran, receiver, started, exc, flushed=True)
                        raise
                if ran is not None:
                    ms = round((clock() - started) * 1000.0, 3)
                    ran.append({"name": handler_name(receiver), "ms": ms})
        return skipped

    def handlers_for(self, event_type: str) -> list[tuple[str, str, bool]]:
        """What an event of ``event_type`` runs, in order: ``(subscription, handler name,
        latest_only)`` for each handler (``flask stripe-hooks handlers TYPE``)."""
        anyone = object()  # handlers subscribed with @on() listen to every sender
        return [
            (sig.name, handler_name(receiver), isinstance(receiver, LatestOnly))
            for sig in self.signals_for(event_type)
            for receiver in sig.receivers_for(anyone)
        ]


def _failed(
    ran: list[dict[str, Any]] | None,
    receiver: Any,
    started: float,
    exc: BaseException,
    *,
    flushed: bool = False,
) -> None:
    """Record the handler that raised (``flushed``: whose writes failed when flushed)."""
    if ran is None:
        return
    entry = {
        "name": handler_name(receiver),
        "ms": round((time.perf_counter() - started) * 1000.0, 3),
        "error": f"{type(exc).__name__}: {exc}"[:500],
    }
    if flushed:
        entry["flushed"] = True
    ran.append(entry)


def handler_name(receiver: Any) -> str:
    """``module.function``: how a handler is named in the record of what ran."""
    if isinstance(receiver, LatestOnly):
        return receiver.name
    return f"{getattr(receiver, '__module__', '?')}.{getattr(receiver, '__qualname__', receiver)}"


class NotificationHandler:
    """A handler that hands thin events to a stripe-python ``StripeEventNotificationHandler``
    (``hooks.use_notification_handler``): its callback for the type, else its fallback, with
    its ``pre_handle``, as its own ``handle()`` would run them, but after this library's
    verification, storage and exactly-once gate, inside the event's transaction.

    The notification is parsed with the handler's own client, so the callbacks' fetches and
    the client they get are the ones the handler was built with. Snapshot events are not
    the handler's business: they are passed over.
    """

    __slots__ = ("handler",)

    def __init__(self, handler: Any) -> None:
        if not callable(getattr(handler, "_dispatch", None)) or not hasattr(handler, "_client"):
            async_ = callable(getattr(handler, "_dispatch_async", None))
            raise TypeError(
                "An async notification handler cannot run in the transaction that stores the"
                " event; use stripe.StripeEventNotificationHandler."
                if async_
                else f"{handler!r} is not a stripe-python StripeEventNotificationHandler."
            )
        self.handler = handler

    def __call__(self, event: Any, **kwargs: Any) -> None:
        if event.thin:
            parse = self.handler._client.parse_event_notification_without_verification
            self.handler._dispatch(parse(json.dumps(event.data)))


class LatestOnly:
    """A handler subscribed with ``latest_only=True``: not called for a stale event."""

    __slots__ = ("fn", "name")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.name = handler_name(fn)

    def __call__(self, event: Any, **kwargs: Any) -> Any:
        return self.fn(event, **kwargs)


def _normalize(name: str) -> str:
    """The signal a subscription name connects to: ``customer.*`` → ``customer``."""
    return event_types.normalize_prefix(name) or "*"


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"Event type names are non-empty strings, not {name!r}.")
    if event_types.is_known(_normalize(name)):
        return
    warnings.warn(
        event_types.unknown_type_message(name, prefix=True),
        UnknownEventTypeWarning,
        stacklevel=_outside_package(),
    )


def _outside_package() -> int:
    """The ``stacklevel`` of the first caller outside this package: the line with the
    user's ``@hooks.on(...)``, however many of our functions lie between."""
    package = os.path.dirname(os.path.dirname(__file__)) + os.sep  # flask_stripe_hooks/
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level
