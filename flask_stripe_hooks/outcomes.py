"""What a delivery or a run of a stored event came to: :class:`Result` and its outcomes.

The outcomes a delivery row stores (``processed``, ``duplicate``, ``queued``, ``rejected``,
``failed``, ``retrying``, ``ignored``; see :mod:`flask_stripe_hooks.models`), ``dead``, and the
four below. The pipeline speaks only of outcomes; the webhook view maps each to its HTTP status
(``flask_stripe_hooks.webhook.STATUS``), and the CLI, the admin and queue workers read them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import DEAD, DUPLICATE, IGNORED, PROCESSED, QUEUED

#: No such endpoint (or it is disabled), or no such stored event.
MISSING = "missing"
#: The database could not be reached, or dropped the connection: try again later.
UNAVAILABLE = "unavailable"
#: Another worker holds the stored event locked: try again later.
BUSY = "busy"
#: The request came from an address ``STRIPE_HOOKS_ALLOWED_IPS`` does not allow.
FORBIDDEN = "forbidden"
#: Paused (``flask stripe-hooks pause``): stored as pending, run on ``resume``.
PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one delivery or run, and a short text that is safe to send back."""

    outcome: str
    reason: str = ""
    event_id: str | None = None
    #: For ``retrying``: seconds until the event is due.
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        """Done with, as far as Stripe and a queue are concerned: processed, a duplicate,
        queued, paused, ignored or dead (stored, and not to be retried on its own)."""
        return self.outcome in (PROCESSED, DUPLICATE, QUEUED, PAUSED, IGNORED, DEAD)
