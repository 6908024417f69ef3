"""The pipeline: a verified payload becomes a stored event whose handlers run in one
transaction with their writes; then the on-commit callbacks.

This package's root is its one way in. The webhook view, the CLI, the admin, the Celery task
and the recovery functions import from here, never from the modules inside:

- :func:`receiver` gives the webhook view the function that handles one request
  (``receive(state, endpoint_uuid, body, headers, remote_addr) -> Result``), traced when
  ``STRIPE_HOOKS_TRACING`` is on;
- :func:`process_stored` runs a stored event's handlers (workers, ``reprocess``, the admin);
- :func:`store_event` takes in an event that came another way (``fetch-missed``);
- :func:`hand_over` gives a pending event to the queue callback (``--enqueue``, the admin);
- :func:`configure` reads the receiving path's settings for ``init_app``.

Inside: ``intake`` (request bytes to a verified event or a rejection, and where it goes),
``run`` (the handlers in one transaction), ``queue`` (queue mode and pausing), ``attempt``
(the one writer of what an attempt came to), ``verification`` (pure signature and payload
checks), ``storage`` (all of the pipeline's SQL), ``dispatch`` (the handler registry),
``callbacks`` (``on_commit``), ``endpoint_cache``, ``guard`` (the receiving path's guards)
and ``tracing``.
"""

from __future__ import annotations

from typing import Any

from .callbacks import on_commit
from .dispatch import HandlerSignal, Registry
from .endpoint_cache import EndpointInfo, watch_endpoint_writes
from .guard import parse_allowlist, parse_rejected_limit, parse_store_body
from .intake import store_event
from .queue import hand_over
from .tracing import process_stored, receiver

__all__ = [
    "EndpointInfo",
    "HandlerSignal",
    "Registry",
    "configure",
    "hand_over",
    "on_commit",
    "process_stored",
    "receiver",
    "store_event",
    "watch_endpoint_writes",
]


def configure(config: dict[str, Any], instance_path: str | None, redact: Any) -> dict[str, Any]:
    """The receiving path's guards, read from the app's settings once: the ``State`` fields
    ``allowed_ips``, ``rejected_limit`` and ``keep_body``. A bad value raises
    ``RuntimeError`` naming the setting."""
    return {
        "allowed_ips": parse_allowlist(config["STRIPE_HOOKS_ALLOWED_IPS"], instance_path),
        "rejected_limit": parse_rejected_limit(config["STRIPE_HOOKS_MAX_REJECTED_PER_MINUTE"]),
        "keep_body": parse_store_body(config["STRIPE_HOOKS_STORE_BODY"], redact),
    }
