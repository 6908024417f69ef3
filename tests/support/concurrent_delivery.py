"""Run by test_concurrency.py in separate processes: deliver one signed body at a given time.

python concurrent_delivery.py DATABASE_URL ENDPOINT_UUID BODY_FILE HEADER START_AT FAIL
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from flask_stripe_hooks import StripeHooks  # noqa: E402

from .helpers import make_app, record  # noqa: E402


def main() -> None:
    url, endpoint_uuid, body_file, header, start_at, fail = sys.argv[1:7]
    hooks = StripeHooks()
    app = make_app(url, hooks)

    @hooks.on("*")
    def slow_handler(event, **kwargs):
        time.sleep(0.3)  # widen the window in which the others arrive
        record(app, event.id, "effect")
        if fail == "1":
            raise RuntimeError("fails every time")

    body = Path(body_file).read_bytes()
    client = app.test_client()
    time.sleep(max(0.0, float(start_at) - time.time()))
    response = client.post(
        f"/stripe/webhook/{endpoint_uuid}/", data=body, headers={"Stripe-Signature": header}
    )
    print(response.status_code, response.get_data(as_text=True).strip())


if __name__ == "__main__":
    main()
