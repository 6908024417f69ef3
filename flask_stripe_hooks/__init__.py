"""Receive, verify, store and dispatch Stripe webhooks in Flask."""

from .dispatch import UnknownEventTypeWarning
from .events import Event
from .extension import StripeHooks
from .processing import EndpointInfo, on_commit

__version__ = "0.1.0"

__all__ = ["EndpointInfo", "Event", "StripeHooks", "UnknownEventTypeWarning", "on_commit"]
