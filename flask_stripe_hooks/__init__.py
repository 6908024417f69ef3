"""Receive, verify, store and dispatch Stripe webhooks in Flask."""

from .errors import Ignore, Retry, StripeHooksError, UnknownEventTypeWarning
from .events import Event, ThinEvent
from .extension import StripeHooks
from .pipeline import EndpointInfo, on_commit

__version__ = "0.1.0"

__all__ = [
    "EndpointInfo",
    "Event",
    "Ignore",
    "Retry",
    "StripeHooks",
    "StripeHooksError",
    "ThinEvent",
    "UnknownEventTypeWarning",
    "on_commit",
]
