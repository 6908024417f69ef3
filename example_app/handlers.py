"""Stripe event handlers. create_app() imports this module, which registers them.

Each handler runs inside the transaction that stores the event: if one raises, the event,
its handlers' writes and this log are all rolled back and Stripe retries the delivery.
"""

from __future__ import annotations

import logging

from flask_stripe_hooks import Event

from . import db, hooks
from .models import ActivityLog, Customer

log = logging.getLogger(__name__)


def note(event: Event, handler: str, message: str) -> None:
    db.session.add(ActivityLog(event_id=event.id, handler=handler, message=message))


@hooks.on("*")  # every event, first
def every_event(event: Event, **kwargs: object) -> None:
    note(event, "every_event", f"received {event.type}")


@hooks.on("customer.created")  # one exact type
def customer_created(event: Event, **kwargs: object) -> None:
    obj = event.object
    db.session.add(Customer(stripe_id=obj["id"], email=obj.get("email")))
    note(event, "customer_created", f"stored customer {obj['id']}")


@hooks.on("customer")  # prefix: customer.created, customer.subscription.updated, ...
def any_customer_event(event: Event, **kwargs: object) -> None:
    note(event, "any_customer_event", f"customer-family event {event.type}")


@hooks.on("price", "product")  # several types in one handler
def catalog_changed(event: Event, **kwargs: object) -> None:
    note(event, "catalog_changed", f"{event.object['object']} {event.object['id']} changed")


@hooks.on("customer.subscription.trial_will_end")
def trial_ending(event: Event, **kwargs: object) -> None:
    subscription = event.object
    note(event, "trial_ending", f"trial of {subscription['id']} ends soon")

    def send_reminder() -> None:
        # Runs only after the event and the note above are committed: never an email for
        # work that was rolled back. Send mail, enqueue a task, invalidate a cache here.
        log.info("would email the customer of %s about the trial ending", subscription["id"])

    hooks.on_commit(send_reminder)
