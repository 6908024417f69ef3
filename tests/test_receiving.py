"""POST {prefix}/webhook/<uuid>/: every status code and rule of the receiving contract."""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask_stripe_hooks import signals
from flask_stripe_hooks.models import StripeEvent, WebhookDelivery, WebhookEndpoint
from flask_stripe_hooks.testing import (
    build_event,
    create_endpoint,
    deliver,
    new_secret,
    sign_payload,
)
from flask_stripe_hooks.utils import utcnow

from support.helpers import handled, record, rows


@pytest.fixture
def recorder(app, hooks):
    @hooks.on("*")
    def every(event, **kwargs):
        record(app, event.id, event.type)


def post(client, endpoint, body, header=None, **headers):
    if header is not None:
        headers["Stripe-Signature"] = header
    return client.post(f"/stripe/webhook/{endpoint.uuid}/", data=body, headers=headers)


def test_valid_event_is_stored_and_handled(app, client, endpoint, recorder):
    event = build_event("customer.created", {"email": "a@example.com"})
    response = deliver(client, endpoint, event)
    assert response.status_code == 200
    assert response.get_data(as_text=True).strip() == "processed"
    assert handled(app) == [(event["id"], "customer.created")]
    (stored,) = rows(app, StripeEvent)
    assert stored.id == event["id"]
    assert stored.type == "customer.created"
    assert stored.status == "processed"
    assert stored.attempts == 1
    assert stored.data["object"]["email"] == "a@example.com"
    assert stored.request_id == event["request"]["id"]
    assert stored.idempotency_key == event["request"]["idempotency_key"]
    assert stored.endpoint_id == endpoint.id
    (delivery,) = rows(app, WebhookDelivery)
    assert delivery.valid and delivery.outcome == "processed"
    assert delivery.event_id == event["id"]
    assert json.loads(delivery.body) == event  # the raw body, verbatim
    assert "Stripe-Signature" in delivery.headers
    assert delivery.remote_addr == "127.0.0.1"
    assert delivery.duration_ms is not None and delivery.duration_ms >= 0


def test_stored_data_is_what_stripe_sent(app, db, client, endpoint, hooks):
    # Serialised from the parsed body: it reads back as the handler saw it.
    seen = []

    @hooks.on("customer.updated")
    def keep(event, **kwargs):
        seen.append(event.data)

    event = build_event("customer.updated", {"name": "NAME", "tags": "TAGS"})
    body = (
        json.dumps(event, indent=2)
        .replace('"NAME"', r'"Zo\u00eb \u2028 \"q\" \\ \ud83d\ude00 \u001f"')
        .replace(
            '"TAGS"',
            '{"big": 123456789012345678901234567890, "f": 0.1, "tiny": 5e-324,'
            ' "neg": -0.0, "exp": 1.5E+3, "dup": 1, "dup": 2, "deep": [[[{"a": [null, true]}]]]}',
        )
    )
    response = deliver(client, endpoint, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    (stored,) = rows(app, StripeEvent)
    sent = json.loads(body)["data"]
    assert stored.data == sent == seen[0]
    assert stored.data["object"]["name"] == 'Zoë \u2028 "q" \\ \U0001f600 \x1f'
    assert stored.data["object"]["tags"]["big"] == 123456789012345678901234567890
    assert stored.data["object"]["tags"]["dup"] == 2  # the last of duplicate keys, as Python


def test_stored_data_is_the_last_of_duplicate_data_members(app, client, endpoint, hooks):
    # Python keeps the last of duplicate keys, and so does what is stored.
    seen = []

    @hooks.on("customer.updated")
    def keep(event, **kwargs):
        seen.append(event.data)

    event = build_event("customer.updated", {"name": "LAST"})
    first = json.dumps({"object": {"id": "cus_first", "name": "FIRST"}})
    body = json.dumps(event).replace('{"id": "evt_', f'{{"data": {first}, "id": "evt_', 1)
    assert body.count('"data":') == 2 and body.index("FIRST") < body.index("LAST")
    assert deliver(client, endpoint, body).status_code == 200
    (stored,) = rows(app, StripeEvent)
    assert stored.data == seen[0] == event["data"]
    assert stored.data["object"]["name"] == "LAST"


@pytest.mark.parametrize("number", ["1e-400", "-2.5e-330", "0e-20000", "0." + "0" * 500])
def test_numbers_too_small_for_a_float_are_stored_as_python_reads_them(
    app, client, endpoint, recorder, number
):
    body = json.dumps(build_event("customer.updated", {"balance": 1})).replace(
        '"balance": 1', f'"balance": {number}'
    )
    response = deliver(client, endpoint, body)
    assert response.status_code == 200
    (stored,) = rows(app, StripeEvent)
    assert stored.data["object"]["balance"] == 0.0  # what the handler saw


@pytest.mark.parametrize("number", ["1e400", "-1e400"])
def test_numbers_too_large_for_a_float_are_refused(app, client, endpoint, recorder, number):
    body = json.dumps(build_event("customer.updated", {"balance": 1})).replace(
        '"balance": 1', f'"balance": {number}'
    )
    response = deliver(client, endpoint, body)
    assert response.status_code == 400
    assert response.get_data(as_text=True).strip() == "body is not JSON"
    assert rows(app, StripeEvent) == []
    assert [d.outcome for d in rows(app, WebhookDelivery)] == ["rejected"]


def test_missing_signature_is_400_and_nothing_stored(app, client, endpoint, recorder):
    response = post(client, endpoint, json.dumps(build_event("customer.created")))
    assert response.status_code == 400
    assert "Stripe-Signature" in response.get_data(as_text=True)
    assert rows(app, WebhookDelivery) == [] and rows(app, StripeEvent) == []


def test_the_url_without_its_trailing_slash_answers_the_same(
    app, client, endpoint, secret, recorder
):
    """Stripe's dashboard keeps a URL as typed: both forms receive, and tell what they allow."""
    for path in (f"/stripe/webhook/{endpoint.uuid}/", f"/stripe/webhook/{endpoint.uuid}"):
        options, get = client.options(path), client.get(path)
        assert (options.status_code, set(options.allow)) == (200, {"OPTIONS", "POST"})
        assert (get.status_code, set(get.allow)) == (405, {"OPTIONS", "POST"})
    event = build_event("customer.created")
    body, header = sign_payload(event, secret)
    response = client.post(
        f"/stripe/webhook/{endpoint.uuid}", data=body, headers={"Stripe-Signature": header}
    )
    assert response.status_code == 200
    assert handled(app) == [(event["id"], "customer.created")]


def test_unknown_endpoint_is_404(app, client, secret, recorder):
    body, header = sign_payload(build_event("customer.created"), secret)
    response = client.post(
        f"/stripe/webhook/{uuid.uuid4()}/", data=body, headers={"Stripe-Signature": header}
    )
    assert response.status_code == 404
    assert client.post("/stripe/webhook/not-a-uuid/", data=body).status_code == 404
    assert rows(app, WebhookDelivery) == []


def test_disabled_endpoint_is_404(app, db, client, endpoint, recorder):
    with app.app_context():
        db.session.execute(
            sa.update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint.id)
            .values(status="disabled")
        )
        db.session.commit()
    assert deliver(client, endpoint, build_event("customer.created")).status_code == 404
    assert handled(app) == []


def test_body_over_the_limit_is_413(app_factory, secret):
    app = app_factory(STRIPE_HOOKS_MAX_BODY=1000)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"], secret=secret)
    client = app.test_client()
    big = build_event("customer.created", {"description": "x" * 2000})
    assert deliver(client, endpoint, big).status_code == 413
    # Without Content-Length (chunked), the limit holds too: only limit+1 bytes are read.
    body, header = sign_payload(big, secret)
    response = client.post(
        f"/stripe/webhook/{endpoint.uuid}/",
        input_stream=io.BytesIO(body.encode()),
        headers={"Stripe-Signature": header, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},  # as gunicorn sets it
    )
    assert response.status_code == 413
    assert rows(app, WebhookDelivery) == []
    small = build_event("customer.created")
    assert deliver(client, endpoint, small).status_code == 200


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda body, header, secret: (body, header.replace("v1=", "v1=00")), "signature"),
        (lambda body, header, secret: (body + " ", header), "signature"),
        (lambda body, header, secret: (body, "garbage"), "malformed"),
        (lambda body, header, secret: (body, header.split(",")[0]), "signature"),
        (
            lambda body, header, secret: sign_payload(body, secret, int(time.time()) - 400),
            "tolerance",
        ),
        (
            lambda body, header, secret: sign_payload(body, secret, int(time.time()) + 400),
            "future",
        ),
        (lambda body, header, secret: sign_payload(body, new_secret()), "signature"),
    ],
    ids=["bad-sig", "tampered-body", "garbage-header", "no-v1", "stale", "future", "other-secret"],
)
def test_bad_signatures_are_400_and_audited(
    app, client, endpoint, secret, recorder, mutate, reason
):
    body, header = sign_payload(build_event("customer.created"), secret)
    body, header = mutate(body, header, secret)
    response = post(client, endpoint, body, header)
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert reason in text and len(text) < 100 and "Traceback" not in text
    assert handled(app) == [] and rows(app, StripeEvent) == []
    (delivery,) = rows(app, WebhookDelivery)
    assert delivery.valid is False and delivery.outcome == "rejected"
    assert reason in delivery.error


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"\xff\xfe not utf-8", "UTF-8"),
        (b"not json", "JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"object": "customer", "id": "cus_1"}).encode(), "not a Stripe event"),
        (json.dumps({"object": "event", "type": "customer.created"}).encode(), "no valid id"),
        (
            json.dumps({"object": "event", "id": "evt_1", "type": "x", "data": {}}).encode(),
            "livemode",
        ),
    ],
    ids=["not-utf8", "not-json", "deep-nesting", "array", "not-event", "no-id", "no-livemode"],
)
def test_bodies_that_are_not_events_are_400(app, client, endpoint, secret, recorder, body, reason):
    header = _sign_bytes(body, secret)
    response = post(client, endpoint, body, header)
    assert response.status_code == 400
    assert reason in response.get_data(as_text=True)
    assert handled(app) == [] and rows(app, StripeEvent) == []
    (delivery,) = rows(app, WebhookDelivery)
    assert delivery.body == body[:4096] and delivery.valid is False  # a rejected one's prefix


def _sign_bytes(body: bytes, secret: str) -> str:
    """A valid signature over bytes that may not be UTF-8 (what a forger cannot make)."""
    import stripe

    try:
        return sign_payload(body, secret)[1]
    except UnicodeDecodeError:
        return stripe.WebhookSignature.generate_signature_header("x", secret)


def test_livemode_mismatch_is_400(app, client, endpoint, recorder):
    response = deliver(client, endpoint, build_event("customer.created", livemode=True))
    assert response.status_code == 400
    assert "live-mode event sent to a test endpoint" in response.get_data(as_text=True)
    assert handled(app) == []


@pytest.fixture(params=["on conflict do nothing", "integrity error"])
def gate(request, monkeypatch):
    """How an existing event id is found: ``ON CONFLICT DO NOTHING`` (PostgreSQL, SQLite) or,
    as on a database without it, the primary key's ``IntegrityError`` and a rollback."""
    from contextlib import nullcontext

    from flask_stripe_hooks.pipeline import storage

    integrity_error = request.param == "integrity error"
    switch = storage.without_on_conflict() if integrity_error else nullcontext()
    gates = []

    def spy(conn, cursor, statement, *args):
        # On PostgreSQL the event's INSERT leads a statement that also tracks its object.
        if re.match(r"(WITH \w+ AS \s*\()?INSERT INTO stripe_hooks_event ", statement):
            gates.append("ON CONFLICT" in statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", spy)
    with switch:
        yield request.param
    sa.event.remove(sa.Engine, "before_cursor_execute", spy)
    assert set(gates) == {request.param == "on conflict do nothing"}, "the gate was not used"


def test_duplicate_is_200_and_handlers_do_not_run_again(app, client, endpoint, recorder, gate):
    event = build_event("invoice.paid")
    assert deliver(client, endpoint, event).status_code == 200
    response = deliver(client, endpoint, event)
    assert response.status_code == 200
    assert response.get_data(as_text=True).strip() == "duplicate"
    assert handled(app) == [(event["id"], "invoice.paid")]
    outcomes = sorted(d.outcome for d in rows(app, WebhookDelivery))
    assert outcomes == ["duplicate", "processed"]
    (stored,) = rows(app, StripeEvent)
    assert stored.attempts == 1


def test_several_active_secrets_and_expiry(app, db, client, endpoint, secret, recorder):
    """During a rotation a payload signed with any unexpired secret is accepted."""
    new = new_secret()
    with app.app_context():
        ep = db.session.get(WebhookEndpoint, endpoint.id)
        ep.secrets = [
            {"secret": secret, "expires_at": (utcnow() + timedelta(hours=1)).isoformat()},
            {"secret": new, "expires_at": None},
        ]
        db.session.commit()
    assert (
        deliver(client, endpoint, build_event("customer.created"), secret=secret).status_code == 200
    )
    assert deliver(client, endpoint, build_event("customer.created"), secret=new).status_code == 200
    # Stripe sends one v1 per secret while a secret rolls: both in one header.
    event = build_event("customer.created")
    body, h_old = sign_payload(event, secret)
    _, h_new = sign_payload(body, new)
    both = h_old + "," + h_new.split(",")[1]
    assert post(client, endpoint, body, both).status_code == 200
    with app.app_context():
        ep = db.session.get(WebhookEndpoint, endpoint.id)
        ep.secrets = [
            {"secret": secret, "expires_at": (utcnow() - timedelta(seconds=1)).isoformat()},
            {"secret": new, "expires_at": None},
        ]
        db.session.commit()
    expired = deliver(client, endpoint, build_event("customer.created"), secret=secret)
    assert expired.status_code == 400
    assert len(handled(app)) == 3


def test_per_endpoint_tolerance(app, db, client, endpoint, secret, recorder):
    with app.app_context():
        db.session.get(WebhookEndpoint, endpoint.id).tolerance = 3600
        db.session.commit()
    old = int(time.time()) - 1800
    assert (
        deliver(client, endpoint, build_event("customer.created"), timestamp=old).status_code == 200
    )


def test_handler_error_is_500_rolled_back_and_recorded(app, hooks, client, endpoint):
    @hooks.on("charge.failed")
    def writes_then_fails(event, **kwargs):
        record(app, event.id, "before the error")
        raise ValueError("card processor exploded: secret detail")

    event = build_event("charge.failed")
    response = deliver(client, endpoint, event)
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "secret detail" not in text
    assert handled(app) == []  # the handler's own write was rolled back
    (stored,) = rows(app, StripeEvent)
    assert stored.status == "failed" and stored.attempts == 1
    assert "card processor exploded" in stored.last_error
    (delivery,) = rows(app, WebhookDelivery)
    assert delivery.outcome == "failed" and delivery.valid
    assert "ValueError" in delivery.traceback and "writes_then_fails" in delivery.traceback


def test_failed_event_is_processed_again_on_retry(app, hooks, client, endpoint, gate):
    calls = []

    @hooks.on("charge.failed")
    def flaky(event, **kwargs):
        calls.append(event.id)
        if len(calls) == 1:
            raise RuntimeError("first attempt fails")
        record(app, event.id, "second attempt")

    event = build_event("charge.failed")
    assert deliver(client, endpoint, event).status_code == 500
    assert deliver(client, endpoint, event).status_code == 200
    assert deliver(client, endpoint, event).get_data(as_text=True).strip() == "duplicate"
    assert calls == [event["id"], event["id"]]
    assert handled(app) == [(event["id"], "second attempt")]
    (stored,) = rows(app, StripeEvent)
    assert stored.status == "processed" and stored.attempts == 2 and stored.last_error is None


def test_on_commit_runs_after_commit_only(app, hooks, client, endpoint):
    from flask_stripe_hooks import on_commit

    seen = []

    @hooks.on("customer.created")
    def ok(event, **kwargs):
        record(app, event.id)
        hooks.on_commit(lambda: seen.append(("committed", event.id, _count(app))))

    @hooks.on("customer.deleted")
    def fails(event, **kwargs):
        on_commit(lambda: seen.append(("must not run", event.id)))
        raise RuntimeError("rollback")

    good, bad = build_event("customer.created"), build_event("customer.deleted")
    assert deliver(client, endpoint, good).status_code == 200
    assert deliver(client, endpoint, bad).status_code == 500
    # The callback saw the committed row from a fresh connection: it ran after COMMIT.
    assert seen == [("committed", good["id"], 1)]


def _count(app) -> int:
    db = app.extensions["sqlalchemy"]
    with db.engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM stripe_hooks_event")).scalar()


def test_on_commit_outside_a_handler_raises():
    from flask_stripe_hooks import on_commit

    with pytest.raises(RuntimeError, match="from a handler"):
        on_commit(lambda: None)


def test_failing_on_commit_callback_keeps_event_processed(app, hooks, client, endpoint, caplog):
    @hooks.on("customer.created")
    def handler(event, **kwargs):
        hooks.on_commit(lambda: 1 / 0)

    assert deliver(client, endpoint, build_event("customer.created")).status_code == 200
    assert rows(app, StripeEvent)[0].status == "processed"
    assert "on_commit callback" in caplog.text


def test_handlers_get_a_readable_event_and_endpoint(app, hooks, client, endpoint):
    got = {}

    @hooks.on("customer.subscription.updated")
    def handler(event, endpoint, **kwargs):
        got["event"], got["endpoint"] = event, endpoint

    event = build_event(
        "customer.subscription.updated",
        {"status": "active"},
        previous_attributes={"status": "trialing"},
        account="acct_123",
    )
    assert deliver(client, endpoint, event).status_code == 200
    e = got["event"]
    assert (e.id, e.type, e.livemode, e.account) == (event["id"], event["type"], False, "acct_123")
    assert e.object["status"] == "active" and e.previous_attributes == {"status": "trialing"}
    assert e.created_at is not None and e.to_stripe().data.object.status == "active"
    assert got["endpoint"].uuid == endpoint.uuid and got["endpoint"].mode == "test"


def test_lifecycle_signals(app, hooks, client, endpoint, secret):
    seen = []

    def listener(name):
        def receive(sender, **kwargs):
            assert sender is app
            seen.append((name, kwargs.get("reason") or getattr(kwargs.get("event"), "type", "")))

        return receive

    receivers = {
        signals.delivery_received: listener("received"),
        signals.delivery_rejected: listener("rejected"),
        signals.event_processed: listener("processed"),
        signals.event_failed: listener("failed"),
        signals.duplicate_skipped: listener("duplicate"),
    }
    for signal, fn in receivers.items():
        signal.connect(fn)

    @hooks.on("charge.failed")
    def boom(event, **kwargs):
        raise RuntimeError("x")

    try:
        event = build_event("customer.created")
        deliver(client, endpoint, event)
        deliver(client, endpoint, event)
        deliver(client, endpoint, build_event("charge.failed"))
        deliver(client, endpoint, build_event("customer.created"), secret=new_secret())
    finally:
        for signal, fn in receivers.items():
            signal.disconnect(fn)
    assert seen == [
        ("received", ""),
        ("processed", "customer.created"),
        ("received", ""),
        ("duplicate", "customer.created"),
        ("received", ""),
        ("failed", "charge.failed"),
        ("received", ""),
        ("rejected", "signature does not match"),
    ]


def test_one_commit_on_the_happy_path(app, db, client, endpoint, recorder):
    commits = []

    def count(conn):
        commits.append(1)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "commit", count)
    try:
        assert deliver(client, endpoint, build_event("customer.created")).status_code == 200
    finally:
        sa.event.remove(engine, "commit", count)
    assert len(commits) == 1


def test_database_locked_is_503_not_500(tmp_path, app_factory, secret):
    """SQLite: a writer that outlasts the busy timeout → 503 so Stripe retries."""
    import sqlite3

    path = tmp_path / "locked.db"
    app = app_factory(
        f"sqlite:///{path}", SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"timeout": 0.2}}
    )
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"], secret=secret)
    blocker = sqlite3.connect(path)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        response = deliver(app.test_client(), endpoint, build_event("customer.created"))
    finally:
        blocker.rollback()
        blocker.close()
    assert response.status_code == 503
    assert "database" in response.get_data(as_text=True)
    assert deliver(app.test_client(), endpoint, build_event("customer.created")).status_code == 200
