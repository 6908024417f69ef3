"""The deliveries every system receives: a seeded, realistic mix of Stripe events.

Bodies are pretty-printed as Stripe sends them; sizes run from about 1 KB (``price.updated``)
to about 100 KB (an ``invoice.paid`` with 70 lines). Every body is signed by stripe-python
(``stripe.WebhookSignature.generate_signature_header``), never by hand.

Used by ``ingest.py`` and ``run.py`` (which write the signed deliveries to a file that each
system's driver reads before it starts timing) and by ``loadgen.py``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import stripe

#: The signing secret of the benchmark endpoint, the same for every system.
SECRET = "whsec_benchmark_0123456789abcdefghijklmnopqrstuv"
#: The endpoint uuid, the same for every system that has one in its URL.
ENDPOINT_UUID = "6f1c1c0e-8a59-4d0e-9a5c-4c7d5b1f0a11"
#: The API key the systems are configured with (never used: no system calls Stripe).
API_KEY = "sk_test_benchmarkNotARealKey0123456789"
API_VERSION = "2025-09-30.clover"
ID_MARK = "evt_PLACEHOLDER_ID_0000000"

Obj = dict[str, Any]


def _id(rng: random.Random, prefix: str) -> str:
    return f"{prefix}_{rng.getrandbits(96):024x}"


def _customer(rng: random.Random, now: int) -> Obj:
    return {
        "id": _id(rng, "cus"),
        "object": "customer",
        "address": {
            "city": "Berlin",
            "country": "DE",
            "line1": f"Torstraße {rng.randint(1, 200)}",
            "line2": None,
            "postal_code": "10119",
            "state": None,
        },
        "balance": 0,
        "created": now - rng.randint(0, 10**7),
        "currency": "eur",
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": f"user{rng.randint(1, 10**6)}@example.com",
        "invoice_prefix": f"{rng.getrandbits(32):08X}",
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": _id(rng, "pm"),
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {"user_id": str(rng.randint(1, 10**6))},
        "name": "Jenny Rosen",
        "next_invoice_sequence": rng.randint(1, 40),
        "phone": None,
        "preferred_locales": ["de"],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def _price(rng: random.Random, now: int) -> Obj:
    return {
        "id": _id(rng, "price"),
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": now - rng.randint(0, 10**7),
        "currency": "eur",
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": "Pro monthly",
        "product": _id(rng, "prod"),
        "recurring": {
            "aggregate_usage": None,
            "interval": "month",
            "interval_count": 1,
            "meter": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        },
        "tax_behavior": "exclusive",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": rng.choice([900, 1900, 4900]),
        "unit_amount_decimal": "1900",
    }


def _subscription(rng: random.Random, now: int) -> Obj:
    items = []
    sub_id = _id(rng, "sub")
    for _ in range(rng.randint(1, 3)):
        items.append(
            {
                "id": _id(rng, "si"),
                "object": "subscription_item",
                "billing_thresholds": None,
                "created": now,
                "current_period_end": now + 2592000,
                "current_period_start": now,
                "discounts": [],
                "metadata": {},
                "price": _price(rng, now),
                "quantity": rng.randint(1, 5),
                "subscription": sub_id,
                "tax_rates": [],
            }
        )
    return {
        "id": sub_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": now,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "collection_method": "charge_automatically",
        "created": now,
        "currency": "eur",
        "customer": _id(rng, "cus"),
        "days_until_due": None,
        "default_payment_method": _id(rng, "pm"),
        "description": None,
        "discounts": [],
        "ended_at": None,
        "items": {
            "object": "list",
            "data": items,
            "has_more": False,
            "total_count": len(items),
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "latest_invoice": _id(rng, "in"),
        "livemode": False,
        "metadata": {"plan": "pro"},
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": now,
        "status": rng.choice(["active", "trialing", "past_due"]),
        "test_clock": None,
        "trial_end": None,
        "trial_start": None,
    }


def _invoice(rng: random.Random, now: int, lines: int) -> Obj:
    inv_id = _id(rng, "in")
    data = []
    total = 0
    for i in range(lines):
        amount = rng.randint(100, 50000)
        total += amount
        data.append(
            {
                "id": _id(rng, "il"),
                "object": "line_item",
                "amount": amount,
                "currency": "eur",
                "description": f"{rng.randint(1, 9)} × Seat {i} (at €19.00 / month)",
                "discount_amounts": [],
                "discountable": True,
                "discounts": [],
                "invoice": inv_id,
                "livemode": False,
                "metadata": {"line": str(i)},
                "parent": {
                    "subscription_item_details": {
                        "invoice_item": None,
                        "proration": False,
                        "proration_details": {"credited_items": None},
                        "subscription": _id(rng, "sub"),
                        "subscription_item": _id(rng, "si"),
                    },
                    "type": "subscription_item_details",
                },
                "period": {"end": now + 2592000, "start": now},
                "pretax_credit_amounts": [],
                "pricing": {
                    "price_details": {"price": _id(rng, "price"), "product": _id(rng, "prod")},
                    "type": "price_details",
                    "unit_amount_decimal": "1900",
                },
                "quantity": rng.randint(1, 9),
                "taxes": [],
            }
        )
    return {
        "id": inv_id,
        "object": "invoice",
        "account_country": "DE",
        "account_name": "Benchmark GmbH",
        "amount_due": total,
        "amount_paid": total,
        "amount_remaining": 0,
        "attempt_count": 1,
        "attempted": True,
        "auto_advance": False,
        "automatic_tax": {"enabled": False, "liability": None, "status": None},
        "billing_reason": "subscription_cycle",
        "collection_method": "charge_automatically",
        "created": now,
        "currency": "eur",
        "customer": _id(rng, "cus"),
        "customer_email": "jenny@example.com",
        "customer_name": "Jenny Rosen",
        "default_payment_method": None,
        "description": None,
        "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_bench/test_{inv_id}",
        "invoice_pdf": f"https://pay.stripe.com/invoice/acct_bench/test_{inv_id}/pdf",
        "lines": {
            "object": "list",
            "data": data,
            "has_more": False,
            "total_count": lines,
            "url": f"/v1/invoices/{inv_id}/lines",
        },
        "livemode": False,
        "metadata": {},
        "number": f"BENCH-{rng.randint(1, 9999):04d}",
        "period_end": now,
        "period_start": now - 2592000,
        "status": "paid",
        "status_transitions": {
            "finalized_at": now,
            "marked_uncollectible_at": None,
            "paid_at": now,
            "voided_at": None,
        },
        "subtotal": total,
        "total": total,
    }


def _payment_intent(rng: random.Random, now: int) -> Obj:
    return {
        "id": _id(rng, "pi"),
        "object": "payment_intent",
        "amount": rng.randint(500, 100000),
        "amount_capturable": 0,
        "amount_received": 1900,
        "capture_method": "automatic",
        "client_secret": None,
        "confirmation_method": "automatic",
        "created": now,
        "currency": "eur",
        "customer": _id(rng, "cus"),
        "description": "Subscription update",
        "latest_charge": _id(rng, "ch"),
        "livemode": False,
        "metadata": {"order_id": str(rng.randint(1, 10**8))},
        "payment_method": _id(rng, "pm"),
        "payment_method_options": {
            "card": {
                "installments": None,
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            }
        },
        "payment_method_types": ["card"],
        "status": "succeeded",
    }


def _charge(rng: random.Random, now: int) -> Obj:
    return {
        "id": _id(rng, "ch"),
        "object": "charge",
        "amount": 1900,
        "amount_captured": 1900,
        "amount_refunded": 0,
        "balance_transaction": _id(rng, "txn"),
        "billing_details": {
            "address": {"city": None, "country": "DE", "line1": None, "postal_code": "10119"},
            "email": "jenny@example.com",
            "name": "Jenny Rosen",
            "phone": None,
        },
        "captured": True,
        "created": now,
        "currency": "eur",
        "customer": _id(rng, "cus"),
        "livemode": False,
        "metadata": {},
        "outcome": {
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "risk_score": rng.randint(0, 60),
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": _id(rng, "pi"),
        "payment_method": _id(rng, "pm"),
        "payment_method_details": {
            "card": {
                "brand": "visa",
                "checks": {
                    "address_line1_check": None,
                    "address_postal_code_check": "pass",
                    "cvc_check": "pass",
                },
                "country": "US",
                "exp_month": 12,
                "exp_year": 2030,
                "fingerprint": f"{rng.getrandbits(64):016x}",
                "funding": "credit",
                "last4": "4242",
                "network": "visa",
            },
            "type": "card",
        },
        "receipt_url": "https://pay.stripe.com/receipts/payment/bench",
        "refunded": False,
        "status": "succeeded",
    }


def _checkout_session(rng: random.Random, now: int) -> Obj:
    return {
        "id": _id(rng, "cs_test"),
        "object": "checkout.session",
        "amount_subtotal": 1900,
        "amount_total": 1900,
        "cancel_url": "https://example.com/cancel",
        "client_reference_id": str(rng.randint(1, 10**6)),
        "created": now,
        "currency": "eur",
        "customer": _id(rng, "cus"),
        "customer_details": {"email": "jenny@example.com", "name": "Jenny Rosen"},
        "expires_at": now + 86400,
        "livemode": False,
        "metadata": {},
        "mode": "subscription",
        "payment_status": "paid",
        "status": "complete",
        "subscription": _id(rng, "sub"),
        "success_url": "https://example.com/success",
        "url": None,
    }


def _product(rng: random.Random, now: int) -> Obj:
    return {
        "id": _id(rng, "prod"),
        "object": "product",
        "active": True,
        "created": now,
        "default_price": _id(rng, "price"),
        "description": "The professional plan",
        "images": [],
        "livemode": False,
        "metadata": {},
        "name": "Pro",
        "tax_code": None,
        "updated": now,
        "url": None,
    }


Builder = Callable[[random.Random, int], tuple[Obj, Obj | None]]

#: (type, weight, builder returning data.object and previous_attributes)
MIX: list[tuple[str, int, Builder]] = [
    ("customer.created", 10, lambda r, n: (_customer(r, n), None)),
    ("customer.updated", 10, lambda r, n: (_customer(r, n), {"email": "old@example.com"})),
    ("customer.subscription.created", 8, lambda r, n: (_subscription(r, n), None)),
    (
        "customer.subscription.updated",
        12,
        lambda r, n: (_subscription(r, n), {"status": "trialing"}),
    ),
    ("invoice.created", 8, lambda r, n: (_invoice(r, n, 3), None)),
    ("invoice.finalized", 8, lambda r, n: (_invoice(r, n, 5), None)),
    ("invoice.paid", 6, lambda r, n: (_invoice(r, n, 70), None)),  # the large one, ~100 KB
    ("payment_intent.succeeded", 12, lambda r, n: (_payment_intent(r, n), None)),
    ("charge.succeeded", 12, lambda r, n: (_charge(r, n), None)),
    ("checkout.session.completed", 6, lambda r, n: (_checkout_session(r, n), None)),
    ("price.updated", 4, lambda r, n: (_price(r, n), {"unit_amount": 900})),
    ("product.created", 4, lambda r, n: (_product(r, n), None)),
]
TYPES = [t for t, _, _ in MIX]


def event_body(rng: random.Random, event_type: str, event_id: str, now: int) -> str:
    builder = next(b for t, _, b in MIX if t == event_type)
    obj, previous = builder(rng, now)
    data: Obj = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    event = {
        "id": event_id,
        "object": "event",
        "api_version": API_VERSION,
        "created": now,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": _id(rng, "req"), "idempotency_key": f"{rng.getrandbits(128):032x}"},
        "type": event_type,
    }
    return json.dumps(event, indent=2, ensure_ascii=False)


def bodies(count: int, *, duplicates: float = 0.0, seed: int = 5) -> list[str]:
    """``count`` bodies in delivery order; a share ``duplicates`` re-sends an earlier one."""
    rng = random.Random(seed)
    weights = [w for _, w, _ in MIX]
    now = 1_760_000_000
    out: list[str] = []
    fresh = 0
    for _ in range(count):
        if out and rng.random() < duplicates:
            out.append(out[rng.randrange(len(out))])
            continue
        event_type = rng.choices(TYPES, weights)[0]
        fresh += 1
        out.append(event_body(rng, event_type, f"evt_bench{seed:02d}{fresh:014d}", now))
    return out


def templates(seed: int = 7, per_type: int = 4) -> list[str]:
    """Bodies with :data:`ID_MARK` in place of the event id, in mix proportions."""
    rng = random.Random(seed)
    out: list[str] = []
    for event_type, weight, _ in MIX:
        for _ in range(max(1, weight * per_type // 4)):
            out.append(event_body(rng, event_type, ID_MARK, 1_760_000_000))
    rng.shuffle(out)
    return out


def sign(body: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header for ``body``, made by stripe-python."""
    return stripe.WebhookSignature.generate_signature_header(
        body, SECRET, timestamp=int(time.time()) if timestamp is None else timestamp
    )


def signed(items: list[str]) -> Iterator[tuple[str, str]]:
    timestamp = int(time.time())
    for body in items:
        yield body, sign(body, timestamp)


def write(path: str, items: list[str]) -> None:
    """Write signed deliveries (one JSON ``[body, header]`` a line) for a driver to read."""
    with open(path, "w", encoding="utf-8") as fh:
        for body, header in signed(items):
            fh.write(json.dumps([body, header]) + "\n")


def read(path: str) -> list[tuple[bytes, str]]:
    with open(path, encoding="utf-8") as fh:
        return [(b.encode("utf-8"), h) for b, h in map(json.loads, fh)]


def describe(items: list[str]) -> str:
    sizes = sorted(len(b.encode()) for b in items)
    unique = len(set(items))
    return (
        f"{len(items)} deliveries ({len(items) - unique} duplicates), body sizes"
        f" {sizes[0] / 1024:.1f}-{sizes[-1] / 1024:.1f} KB,"
        f" median {sizes[len(sizes) // 2] / 1024:.1f} KB,"
        f" mean {sum(sizes) / len(sizes) / 1024:.1f} KB"
    )


if __name__ == "__main__":
    print(describe(bodies(2000, duplicates=0.2)))
