"""The library's exceptions, in one place.

:class:`StripeHooksError` is the base of every refusal the library raises: faces (the CLI, the
admin) catch it to show its message. :class:`Retry` and :class:`Ignore` are not errors but
what a handler raises to say how its event should be treated; :class:`UnknownEventTypeWarning`
is the warning for a subscription to a name Stripe does not send.

Import them from :mod:`flask_stripe_hooks` (``StripeHooksError``, ``Retry``, ``Ignore``,
``UnknownEventTypeWarning``) or from here.
"""

from __future__ import annotations

from datetime import timedelta

from .utils import parse_duration


class StripeHooksError(Exception):
    """A refusal with a sentence a person can act on.

    ``message`` is that sentence; ``field`` names the form field or Stripe parameter it
    concerns (``"url"``, ``"enabled_events"``, ...) or is ``None``. Faces catch this one
    class to show the message, whether the input or Stripe refused.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class Rejected(StripeHooksError):
    """A delivery that must not be processed (a bad signature, a stale timestamp, a body that
    is no Stripe event); ``reason`` is short and safe to send back."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotAnEvent(StripeHooksError, ValueError):
    """A JSON body that is not a Stripe event; the message says what is missing."""


class UnreadableSecret(StripeHooksError, RuntimeError):
    """A stored secret that the configured key cannot decrypt (or no key is set)."""


class EndpointError(StripeHooksError, ValueError):
    """Input that cannot become an endpoint; ``field`` names the form field it concerns."""


class StripeAPIError(StripeHooksError):
    """Stripe (or the configuration to reach it) refused a request.

    ``message`` and ``field`` as in :class:`StripeHooksError`; ``status`` is Stripe's HTTP
    status when there was a response.
    """

    def __init__(self, message: str, field: str | None = None, *, status: int | None = None):
        super().__init__(message, field)
        self.status = status


class BadCursor(StripeHooksError, ValueError):
    """A ``before=`` or ``after=`` value that is not a cursor of this list."""


class InvalidTestEvent(StripeHooksError, ValueError):
    """A test event :func:`flask_stripe_hooks.testing.event_for` cannot build; the message
    says why."""


class EventNotProcessed(StripeHooksError):
    """The event's handlers failed (or the database was away); the Celery task retries."""


class Retry(Exception):
    """Raise from a handler for an event that cannot be handled yet (say, the object it is
    about is not stored yet): the handlers' writes roll back and the event runs again later.

    ``after`` is the first wait (``"30s"``, ``"5m"``, seconds, or a ``timedelta``); each
    further retry of the same event waits twice as long, up to ``STRIPE_HOOKS_RETRY_MAX``.
    In a request, Stripe is answered ``503`` with ``Retry-After`` and retries; in queue mode
    the event is queued again with that delay. ``reason`` is kept on the event.
    """

    def __init__(self, reason: str = "", *, after: str | float | timedelta = "1m") -> None:
        super().__init__(reason)
        self.reason = reason
        if isinstance(after, str):
            after = parse_duration(after)
        self.after = after.total_seconds() if isinstance(after, timedelta) else float(after)

    def delay(self, retries: int, cap: float) -> float:
        """Seconds before retry number ``retries`` (1 for the first): doubling from
        ``after``, at most ``cap``."""
        return float(min(cap, self.after * 2 ** max(0, retries - 1)))


class Ignore(Exception):
    """Raise from a handler for an event that needs nothing done, ever (say, it is about an
    object of another app sharing the account): the handlers' writes roll back, the event is
    recorded as ``ignored`` with ``reason``, Stripe is answered ``200``, and it is not run
    again."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownEventTypeWarning(UserWarning):
    """A handler subscribed to a name that is no Stripe event type nor a prefix of one."""
