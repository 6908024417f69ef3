"""The Flask systems under test, each a small app as its author would write it.

- ``fsh``: flask-stripe-hooks, its blueprint and one handler.
- ``minimal``: the least a correct receiver does (the yardstick): stripe-python's
  ``WebhookSignature.verify_header``, one ``json.loads``, insert the event and a delivery row
  (the same tables and columns flask-stripe-hooks writes), call the handler, commit once.
- ``handwritten``: a receiver written the way most people write one: the
  documented ``stripe.Webhook.construct_event``, a look-up of the event id before the insert,
  ORM objects for the event and a log row, the handler, one commit.

Every system calls the same user handler, which writes one ORM row to ``handled``.
"""

from __future__ import annotations

import importlib
import json
import uuid
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
import stripe
from flask import Flask, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

try:  # run from the repo (python bench/x.py) or as the package "bench"
    from payloads import ENDPOINT_UUID, SECRET, TYPES
except ImportError:  # pragma: no cover
    from .payloads import ENDPOINT_UUID, SECRET, TYPES

TOLERANCE = 300
PATHS = {
    "fsh": f"/stripe/webhook/{ENDPOINT_UUID}/",
    "minimal": f"/minimal/webhook/{ENDPOINT_UUID}/",
    "handwritten": "/stripe/webhook",
}


class Base(DeclarativeBase):
    """The user's own models (mapped apart from each app's ``db``, used on ``db.session``)."""


class Handled(Base):
    """What the user's handler writes: one row per event."""

    __tablename__ = "handled"
    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(255))
    type: Mapped[str] = mapped_column(sa.String(255))


def _base_app(db_url: str) -> tuple[Flask, SQLAlchemy]:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = db_url
    app.config["SECRET_KEY"] = "bench"  # as an app with the admin has
    db = SQLAlchemy()
    db.init_app(app)
    return app, db


def user_handler(db: SQLAlchemy, event_id: str, event_type: str) -> None:
    db.session.add(Handled(event_id=event_id, type=event_type))


# -- flask-stripe-hooks ------------------------------------------------------------------


def create_fsh(
    db_url: str, *, unrelated: int = 0, package: str = "flask_stripe_hooks", **config: Any
) -> Flask:
    """``package``: the import name of the flask-stripe-hooks to build it with (another
    revision of it, unpacked under another name, for a paired comparison)."""
    StripeHooks = importlib.import_module(package).StripeHooks  # noqa: N806

    app, db = _base_app(db_url)
    app.config.update(config)  # STRIPE_HOOKS_* settings
    hooks = StripeHooks(app)

    @hooks.on(*TYPES)
    def on_event(event: Any, **kwargs: Any) -> None:
        user_handler(db, event.id, event.type)

    for i in range(unrelated):  # subscriptions no event of the mix matches
        hooks.signal(f"unrelated{i}.created").connect(on_event, weak=False)
    return app


def seed_fsh(app: Flask) -> None:
    # The package that built the app (another revision keeps these names elsewhere).
    state = app.extensions.get("stripe_hooks")  # none on the minimal receiver
    package = type(state).__module__.split(".")[0] if state is not None else "flask_stripe_hooks"
    models = importlib.import_module(f"{package}.models")
    compress_with_lz4 = getattr(models, "compress_with_lz4", None)
    if compress_with_lz4 is None:  # revisions before it moved to models
        compress_with_lz4 = importlib.import_module(f"{package}.storage").compress_with_lz4
    create_endpoint = importlib.import_module(f"{package}.testing").create_endpoint

    db = app.extensions["sqlalchemy"]
    with app.app_context():
        db.create_all()
        Base.metadata.create_all(db.engine)
        with db.engine.begin() as connection:
            compress_with_lz4(connection)  # as the migrations the docs show do
        create_endpoint(db, secret=SECRET, uuid=uuid.UUID(ENDPOINT_UUID))


# -- the minimal receiver ------------------------------------------------------------------


def create_minimal(db_url: str) -> Flask:
    from flask_stripe_hooks.models import attach_tables

    app, db = _base_app(db_url)
    attach_tables(db.metadata)  # the same three tables flask-stripe-hooks writes
    events = db.metadata.tables["stripe_hooks_event"].insert()
    deliveries = db.metadata.tables["stripe_hooks_delivery"].insert()

    @app.post("/minimal/webhook/<uuid:endpoint_uuid>/")
    def webhook(endpoint_uuid: uuid.UUID) -> tuple[str, int]:
        header = request.headers.get("Stripe-Signature")
        if not header:
            return "missing signature", 400
        body = request.get_data()
        text = body.decode("utf-8")
        try:
            stripe.WebhookSignature.verify_header(text, header, SECRET, TOLERANCE)
        except stripe.SignatureVerificationError:
            return "bad signature", 400
        payload = json.loads(text)
        now = datetime.now(timezone.utc)
        req = payload.get("request") or {}
        try:
            db.session.execute(
                events,
                {
                    "id": payload["id"],
                    "type": payload["type"],
                    "livemode": payload["livemode"],
                    "account": payload.get("account") or "",
                    "api_version": payload.get("api_version") or "",
                    "created": datetime.fromtimestamp(payload["created"], timezone.utc),
                    "data": payload["data"],
                    "request_id": req.get("id"),
                    "idempotency_key": req.get("idempotency_key"),
                    "endpoint_id": 1,
                    "status": "processed",
                    "attempts": 1,
                    "received_at": now,
                    "processed_at": now,
                },
            )
        except IntegrityError:
            db.session.rollback()
            return "duplicate", 200
        db.session.execute(
            deliveries,
            {
                "endpoint_id": 1,
                "received_at": now,
                "remote_addr": request.remote_addr,
                "headers": {"Stripe-Signature": header},
                "body": body,
                "valid": True,
                "outcome": "processed",
                "event_id": payload["id"],
            },
        )
        user_handler(db, payload["id"], payload["type"])
        db.session.commit()
        return "processed", 200

    return app


seed_minimal = seed_fsh  # the same tables and the endpoint row the deliveries point to


# -- the hand-written receiver, as most people write one ---------------------------------


def create_handwritten(db_url: str) -> Flask:
    app, db = _base_app(db_url)

    class StripeEventRecord(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "stripe_event"
        id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
        type: Mapped[str] = mapped_column(sa.String(255), index=True)
        livemode: Mapped[bool]
        created: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
        data: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
        received_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))

    class WebhookLog(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "webhook_log"
        id: Mapped[int] = mapped_column(primary_key=True)
        received_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
        event_id: Mapped[str] = mapped_column(sa.String(255), index=True)
        headers: Mapped[dict[str, str]] = mapped_column(sa.JSON)
        body: Mapped[str] = mapped_column(sa.Text)

    @app.post("/stripe/webhook")
    def webhook() -> tuple[str, int]:
        payload = request.get_data(as_text=True)
        sig_header = request.headers.get("Stripe-Signature")
        try:
            event = stripe.Webhook.construct_event(payload, sig_header, SECRET, TOLERANCE)
        except ValueError:
            return "invalid payload", 400
        except stripe.SignatureVerificationError:
            return "invalid signature", 400
        if db.session.get(StripeEventRecord, event.id) is not None:
            return "already processed", 200
        now = datetime.now(timezone.utc)
        db.session.add(
            StripeEventRecord(
                id=event.id,
                type=event.type,
                livemode=event.livemode,
                created=datetime.fromtimestamp(event.created, timezone.utc),
                data=json.loads(payload)["data"],  # to_dict() has Decimals
                received_at=now,
            )
        )
        db.session.add(
            WebhookLog(
                received_at=now,
                event_id=event.id,
                headers={"Stripe-Signature": sig_header},
                body=payload,
            )
        )
        user_handler(db, event.id, event.type)
        db.session.commit()
        return "ok", 200

    return app


def seed_handwritten(app: Flask) -> None:
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        db.create_all()
        Base.metadata.create_all(db.engine)


FACTORIES = {"fsh": create_fsh, "minimal": create_minimal, "handwritten": create_handwritten}
SEEDS = {"fsh": seed_fsh, "minimal": seed_minimal, "handwritten": seed_handwritten}
EVENT_TABLES = {"fsh": "stripe_hooks_event", "minimal": "stripe_hooks_event"}


def counts(app: Flask, system: str) -> dict[str, int]:
    """Rows stored: events and handler rows (the exactly-once check)."""
    db = app.extensions["sqlalchemy"]
    table = EVENT_TABLES.get(system, "stripe_event")
    with app.app_context():
        run = db.session.execute
        out = {
            "events": run(sa.text(f"SELECT count(*) FROM {table}")).scalar_one(),
            "handled": run(sa.text("SELECT count(*) FROM handled")).scalar_one(),
            "handled_distinct": run(
                sa.text("SELECT count(DISTINCT event_id) FROM handled")
            ).scalar_one(),
        }
        db.session.remove()
    return out
