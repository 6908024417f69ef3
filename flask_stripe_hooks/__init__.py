"""Receive, verify, store and dispatch Stripe webhooks in Flask."""

from .callbacks import on_commit
from .dispatch import Ignore, Retry, UnknownEventTypeWarning
from .endpoint_cache import EndpointInfo
from .events import Event, ThinEvent
from .extension import StripeHooks
from .utils import StripeHooksError

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
