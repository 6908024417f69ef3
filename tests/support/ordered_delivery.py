"""Run by test_order.py in separate processes: deliver signed bodies at a given time to an
app whose ``latest_only`` handler keeps each object's newest state in ``object_state``.

python ordered_delivery.py DATABASE_URL ENDPOINT_UUID START_AT BODY_FILE HEADER [BODY HEADER...]
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from flask_stripe_hooks import StripeHooks  # noqa: E402

from .helpers import make_app  # noqa: E402

UPSERT = sa.text(
    "INSERT INTO object_state (id, status, event_id) VALUES (:id, :status, :event_id)"
    " ON CONFLICT (id) DO UPDATE SET status = excluded.status, event_id = excluded.event_id"
)


def main() -> None:
    url, endpoint_uuid, start_at, *pairs = sys.argv[1:]
    hooks = StripeHooks()
    app = make_app(url, hooks)
    db = app.extensions["sqlalchemy"]

    @hooks.on("customer.subscription", latest_only=True)
    def keep_newest(event, **kwargs):
        time.sleep(random.uniform(0, 0.2))  # widen the window in which the others arrive
        sub = event.object
        db.session.execute(UPSERT, {"id": sub["id"], "status": sub["status"], "event_id": event.id})

    client = app.test_client()
    time.sleep(max(0.0, float(start_at) - time.time()))
    for body_file, header in zip(pairs[::2], pairs[1::2], strict=True):
        body = Path(body_file).read_bytes()
        response = client.post(
            f"/stripe/webhook/{endpoint_uuid}/", data=body, headers={"Stripe-Signature": header}
        )
        print(response.status_code, response.get_data(as_text=True).strip())


if __name__ == "__main__":
    main()
