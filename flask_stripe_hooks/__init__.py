"""Receive, verify, store and dispatch Stripe webhooks in Flask."""

from .dispatch import UnknownEventTypeWarning
from .events import Event
from .extension import StripeHooks
from .processing import EndpointInfo, on_commit
from .utils import StripeHooksError

__version__ = "0.1.0"

__all__ = [
    "EndpointInfo",
    "Event",
    "StripeHooks",
    "StripeHooksError",
    "UnknownEventTypeWarning",
    "on_commit",
]
