"""Lifecycle signals, sent with the real app object as sender (as Flask's own signals are).

Connect to them for metrics, logging or alerts; they are not event handlers (use
``@hooks.on(...)`` for those). A receiver that raises is logged and ignored: observing the
pipeline must not change its outcome.
"""

from __future__ import annotations

from blinker import NamedSignal, Namespace

_signals = Namespace()

#: A request reached a known, enabled endpoint, before verification.
#: kwargs: ``endpoint`` (:class:`~flask_stripe_hooks.EndpointInfo`),
#: ``remote_addr`` (str or None).
delivery_received = _signals.signal("delivery-received")

#: A request was refused with a 4xx. kwargs: ``endpoint`` (EndpointInfo or None when the
#: endpoint is unknown, or the sender's address is not allowed: 403), ``status`` (int),
#: ``reason`` (str, the text sent back).
delivery_rejected = _signals.signal("delivery-rejected")

#: The handlers of an event ran and the transaction committed.
#: kwargs: ``event`` (:class:`~flask_stripe_hooks.Event`), ``duration_ms`` (float).
event_processed = _signals.signal("event-processed")

#: A handler raised (or the database failed); everything was rolled back.
#: kwargs: ``event``, ``exception``.
event_failed = _signals.signal("event-failed")

#: A handler raised ``Retry``; everything was rolled back and the event is ``retrying``.
#: kwargs: ``event``, ``reason`` (str), ``delay`` (seconds until it is due).
event_retrying = _signals.signal("event-retrying")

#: A handler raised ``Ignore``; everything was rolled back and the event is ``ignored``.
#: kwargs: ``event``, ``reason`` (str).
event_ignored = _signals.signal("event-ignored")

#: An event failed (or asked to be retried) ``STRIPE_HOOKS_MAX_ATTEMPTS`` times: it is
#: ``dead`` and runs again only when re-processed by hand. kwargs: ``event``, ``exception``
#: (the last one). Sent after ``event-failed`` for a failure.
event_dead = _signals.signal("event-dead")

#: ``latest_only`` handlers skipped an event because a newer event about the same object had
#: been processed (``event.newer_event_id``). kwargs: ``event``, ``handlers`` (their names).
#: Sent before the transaction commits.
stale_skipped = _signals.signal("stale-skipped")

#: A valid delivery of an event already processed; no handler ran. kwargs: ``event``.
duplicate_skipped = _signals.signal("duplicate-skipped")

#: A valid delivery (or run) of one half of a business event sent twice, a snapshot event and
#: its thin twin, whose other half ran the handlers; no handler ran. kwargs: ``event``,
#: ``twin_id`` (the other half's id).
twin_skipped = _signals.signal("twin-skipped")

#: A thin event received during the shadow phase of a move to thin events ran its handlers in
#: a transaction that was rolled back. kwargs: ``event``, ``exception`` (what a handler
#: raised, or ``None``).
event_shadowed = _signals.signal("event-shadowed")

#: In queue mode, an event was stored as pending and handed to the callback.
#: kwargs: ``event``.
event_queued = _signals.signal("event-queued")

#: Queue mode: events could not be handed to the queue (the callback raised, or the Celery
#: integration could not send their message: the broker refused, or did not answer in time).
#: They stay pending: they are sent again (Celery) or run by the sweeper. kwargs:
#: ``event_ids`` (list of str), ``exception``.
publish_failed = _signals.signal("publish-failed")

#: The webhook view answered a delivery (every delivery, whatever its outcome).
#: kwargs: ``result`` (:class:`~flask_stripe_hooks.outcomes.Result`), ``status`` (int, the
#: HTTP status sent back).
delivery_finished = _signals.signal("delivery-finished")

#: ``flask stripe-hooks doctor`` found problems with an endpoint (the admin's Health page
#: shows the same findings and sends nothing: viewing a page is no alert).
#: kwargs: ``endpoint`` (the :class:`~flask_stripe_hooks.models.WebhookEndpoint`),
#: ``findings`` (list of :class:`~flask_stripe_hooks.health.Finding`).
endpoint_unhealthy = _signals.signal("endpoint-unhealthy")

#: ``fetch-missed`` stored events Stripe listed and this app did not have.
#: kwargs: ``seen`` (int, events Stripe listed), ``missing`` (int, not stored here),
#: ``counts`` (dict outcome -> int, what storing them came to), ``undelivered`` (bool).
events_reconciled = _signals.signal("events-reconciled")

#: The signals that carry an ``event``, by name, with the outcome each stands for (metrics
#: and traces connect to them by name; ``event-retrying`` to ``stale-skipped`` come with
#: retries and ordering, the last two with thin events).
EVENT_OUTCOMES = {
    "event-processed": "processed",
    "event-failed": "failed",
    "duplicate-skipped": "duplicate",
    "event-queued": "queued",
    "event-retrying": "retrying",
    "event-ignored": "ignored",
    "event-dead": "dead",
    "stale-skipped": "stale",
    "twin-skipped": "twin",
    "event-shadowed": "shadow",
}


def by_name(name: str) -> NamedSignal:
    """The signal named ``name`` (the same object wherever it is asked for)."""
    return _signals.signal(name)
