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
- :func:`endpoint_by_id` reads what the pipeline knows of an endpoint (:class:`EndpointInfo`);
- the phases of a thin endpoint made by ``migrate-to-thin`` (:data:`PHASES`);
- :func:`configure` reads the receiving path's settings for ``init_app``.

Inside: ``intake`` (request bytes to a verified event or a rejection, and where it goes),
``run`` (the handlers in one transaction), ``queue`` (queue mode and pausing), ``attempt``
(the one writer of what an attempt came to), ``verification`` (pure signature and payload
checks), ``storage`` (all of the pipeline's SQL), ``dispatch`` (the handler registry),
``callbacks`` (``on_commit``), ``endpoint_cache``, ``guard`` (the receiving path's guards),
``twins`` (a snapshot event and its thin twin run once) and ``tracing``.
"""

from __future__ import annotations

from typing import Any

from .callbacks import on_commit
from .dispatch import HandlerSignal, NotificationHandler, Registry
from .endpoint_cache import EndpointInfo, endpoint_by_id
from .guard import (
    Notices,
    parse_allowlist,
    parse_rejected_limit,
    parse_rejected_prefix,
    parse_store_body,
)
from .intake import store_event
from .queue import hand_over
from .tracing import process_stored, receiver
from .twins import CUTOVER_PHASE, DONE_PHASE, PHASES, SHADOW_PHASE

__all__ = [
    "CUTOVER_PHASE",
    "DONE_PHASE",
    "PHASES",
    "SHADOW_PHASE",
    "EndpointInfo",
    "HandlerSignal",
    "NotificationHandler",
    "Registry",
    "configure",
    "endpoint_by_id",
    "hand_over",
    "on_commit",
    "process_stored",
    "receiver",
    "store_event",
]


def configure(config: dict[str, Any], instance_path: str | None, redact: Any) -> dict[str, Any]:
    """The receiving path's guards, read from the app's settings once: the ``State`` fields
    ``allowed_ips``, ``rejected_limit``, ``rejected_prefix`` and ``keep_body``, and
    ``notices``, the warnings it logs at most once a minute. A bad value raises
    ``RuntimeError`` naming the setting."""
    return {
        "allowed_ips": parse_allowlist(config["STRIPE_HOOKS_ALLOWED_IPS"], instance_path),
        "rejected_limit": parse_rejected_limit(
            config["STRIPE_HOOKS_MAX_REJECTED_PER_MINUTE"],
            config["STRIPE_HOOKS_MAX_REJECTED_BYTES_PER_MINUTE"],
        ),
        "rejected_prefix": parse_rejected_prefix(config["STRIPE_HOOKS_REJECTED_PREFIX"]),
        "keep_body": parse_store_body(config["STRIPE_HOOKS_STORE_BODY"], redact),
        "notices": Notices(),
    }
