"""The handlers on the record: each attempt keeps which handlers ran, in order, how long each
took and which one failed; a failure of a handler's writes is that handler's; the event page
and ``flask stripe-hooks handlers TYPE`` say what runs."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
import sqlalchemy as sa
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery
from flask_stripe_hooks.testing import build_event, create_endpoint, deliver
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from support.admin_support import ADMIN, allow
from support.helpers import record, rows

HERE = __name__


class Base(DeclarativeBase):
    pass


class Note(Base):
    """An app's own ORM model, written by a handler."""

    __tablename__ = "note"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(sa.String(50))


@pytest.fixture
def app(app_factory: Any) -> Any:
    app = app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow)
    with app.app_context():
        Base.metadata.create_all(app.extensions["sqlalchemy"].engine)
    return app


@pytest.fixture
def endpoint(app: Any) -> Any:
    with app.app_context():
        return create_endpoint(app.extensions["sqlalchemy"])


def names(ran: list[dict[str, Any]]) -> list[str]:
    return [h["name"].rsplit(".", 1)[-1] for h in ran]


def test_a_delivery_records_its_handlers_in_order_with_their_times(app, hooks, endpoint):
    @hooks.on("customer")
    def sync_customer(event, **kwargs):
        record(app, event.id, "customer")

    @hooks.on("*")
    def audit_all(event, **kwargs):
        pass

    @hooks.on("customer.created", latest_only=True)
    def welcome(event, **kwargs):
        pass

    event = build_event("customer.created")
    assert deliver(app.test_client(), endpoint, event).status_code == 200
    (delivery,) = rows(app, WebhookDelivery)
    assert names(delivery.handlers) == ["audit_all", "sync_customer", "welcome"]
    assert delivery.handlers[1]["name"] == f"{HERE}.{sync_customer.__qualname__}"
    assert all(h["ms"] >= 0 and "error" not in h for h in delivery.handlers)
    (stored,) = rows(app, StripeEvent)
    assert stored.handlers is None  # a delivery's record is on the delivery

    nothing = build_event("payout.paid")  # "*" only
    deliver(app.test_client(), endpoint, nothing)
    later = rows(app, WebhookDelivery, WebhookDelivery.event_id == nothing["id"])[0]
    assert names(later.handlers) == ["audit_all"]


def test_a_failure_names_the_handler_that_raised(app, hooks, endpoint):
    @hooks.on("invoice")
    def first(event, **kwargs):
        pass

    @hooks.on("invoice.paid")
    def breaks(event, **kwargs):
        raise ValueError("no such plan")

    @hooks.on("invoice.paid")
    def never(event, **kwargs):
        raise AssertionError("runs after a failure")

    event = build_event("invoice.paid")
    assert deliver(app.test_client(), endpoint, event).status_code == 500
    (delivery,) = rows(app, WebhookDelivery)
    assert names(delivery.handlers) == ["first", "breaks"]
    assert delivery.handlers[1]["error"] == "ValueError: no such plan"
    (stored,) = rows(app, StripeEvent)
    assert stored.last_traceback.startswith(f"Handler {HERE}.{breaks.__qualname__} raised.\n")


def test_a_failure_of_a_handlers_writes_is_that_handlers(app, hooks, endpoint):
    """Its ORM writes would fail at the commit, inside the pipeline; flushed after it
    returns, they fail in its name — and the handlers after it do not run."""
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        db.session.add(Note(id=1, text="taken"))
        db.session.commit()

    @hooks.on("charge")
    def keeps_a_note(event, **kwargs):
        db.session.add(Note(id=1, text=event.id[:50]))  # the id is taken

    @hooks.on("charge.succeeded")
    def later(event, **kwargs):
        raise AssertionError("runs after a failure")

    assert deliver(app.test_client(), endpoint, build_event("charge.succeeded")).status_code == 500
    (delivery,) = rows(app, WebhookDelivery)
    (failed,) = delivery.handlers
    assert names([failed]) == ["keeps_a_note"] and failed["flushed"] is True
    assert failed["error"].startswith("IntegrityError")
    (stored,) = rows(app, StripeEvent)
    assert stored.status == "failed" and stored.last_error.startswith("IntegrityError")
    assert stored.last_traceback.startswith(
        f"Handler {HERE}.{keeps_a_note.__qualname__}: its writes failed when flushed"
    )


def test_reprocessing_records_its_handlers_on_the_event(app, hooks, endpoint):
    calls = []

    @hooks.on("product.created")
    def flaky(event, **kwargs):
        calls.append(event.id)
        if len(calls) == 2:
            raise RuntimeError("down")

    event = build_event("product.created")
    assert deliver(app.test_client(), endpoint, event).status_code == 200
    runner = app.test_cli_runner()
    result = runner.invoke(args=["stripe-hooks", "reprocess", event["id"]])
    assert result.exit_code == 1  # the second run fails
    (stored,) = rows(app, StripeEvent)
    assert names(stored.handlers) == ["flaky"]
    assert stored.handlers[0]["error"] == "RuntimeError: down"
    assert runner.invoke(args=["stripe-hooks", "reprocess", event["id"]]).exit_code == 0
    (stored,) = rows(app, StripeEvent)
    assert stored.status == "processed" and "error" not in stored.handlers[0]


def test_recording_costs_no_statement_and_one_commit(app, hooks, endpoint):
    db = app.extensions["sqlalchemy"]
    statements: list[str] = []
    with app.app_context():
        engine = db.engine

    def count(conn, cursor, statement, *args):
        statements.append(statement.split()[0].upper())

    def deliveries(event_type: str) -> list[str]:
        statements.clear()
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            response = deliver(app.test_client(), endpoint, build_event(event_type))
            assert response.status_code == 200
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
        return list(statements)

    for _ in range(3):
        hooks.on("coupon.created")(lambda event, **kwargs: None)
    deliveries("coupon.updated")  # reads the endpoint row once (then cached)
    # No handler at all and three handlers: the same statements (one commit, no flush).
    assert deliveries("coupon.created") == deliveries("coupon.deleted")
    assert deliveries("coupon.created").count("COMMIT") <= 1


def test_the_cli_lists_what_a_type_runs(app, hooks):
    @hooks.on("*")
    def everything(event, **kwargs): ...

    @hooks.on("customer")
    def customers(event, **kwargs): ...

    @hooks.on("customer.subscription.updated", latest_only=True)
    def subscription(event, **kwargs): ...

    runner = app.test_cli_runner()
    result = runner.invoke(args=["stripe-hooks", "handlers", "customer.subscription.updated"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].split() == ["#", "subscribed", "to", "handler"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["1", "*"],
        ["2", "customer"],
        ["3", "customer.subscription.updated"],
    ]
    assert lines[1].endswith(f"{HERE}.{everything.__qualname__}")
    assert lines[3].endswith(f"{HERE}.{subscription.__qualname__} (latest_only)")

    none = runner.invoke(args=["stripe-hooks", "handlers", "payout.paid"])
    assert none.exit_code == 0 and "1  *" in none.output  # only "*"
    typo = runner.invoke(args=["stripe-hooks", "handlers", "custmer.created"])
    assert typo.exit_code == 1 and "did you mean 'customer.created'?" in typo.output
    prefix = runner.invoke(args=["stripe-hooks", "handlers", "customer"])
    assert prefix.exit_code == 1 and "Name a whole event type, such as customer." in prefix.output


def test_the_cli_says_when_nothing_runs(app):
    result = app.test_cli_runner().invoke(args=["stripe-hooks", "handlers", "payout.paid"])
    assert result.exit_code == 0
    assert "No handler runs for payout.paid: subscribe one with @hooks.on('payout.paid')" in (
        result.output
    )


def test_the_event_page_shows_what_ran_and_what_runs_now(app, hooks, endpoint):
    @hooks.on("price")
    def price_sync(event, **kwargs):
        raise RuntimeError("catalogue locked")

    event = build_event("price.updated")
    client = app.test_client()
    assert deliver(client, endpoint, event).status_code == 500
    page = client.get(f"{ADMIN}/events/{event['id']}").text
    section = re.search(r'<section id="handlers">(.*?)</section>', page, re.S)
    assert section is not None
    text = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", section.group(1))))
    assert f"{HERE}.{price_sync.__qualname__}" in text
    assert "RuntimeError: catalogue locked" in text
    assert "An event of this type runs now, in this order:" in text
    assert "(on price)" in text

    other = build_event("payout.paid")
    deliver(client, endpoint, other)
    page = client.get(f"{ADMIN}/events/{other['id']}").text
    assert "No handler ran: none was subscribed to this type." in page
    assert "No handler is subscribed to <code>payout.paid</code> now" in page
