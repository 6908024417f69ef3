"""@hooks.on(...): whole-segment prefixes, '*', order, strong references, typo warnings."""

from __future__ import annotations

import gc
import warnings

import pytest
from flask_stripe_hooks import Event, StripeHooks, UnknownEventTypeWarning
from flask_stripe_hooks.event_types import all_event_types, matching


def event(event_type: str) -> Event:
    return Event(id="evt_1", type=event_type, livemode=False, data={"object": {}})


def calls_for(hooks: StripeHooks, event_type: str) -> list[str]:
    seen: list[str] = []
    hooks.registry.dispatch(event(event_type), seen=seen)
    return seen


def test_prefix_matches_whole_segments_only():
    hooks = StripeHooks()

    @hooks.on("invoice")
    def on_invoice(event, seen, **kwargs):
        seen.append(event.type)

    assert calls_for(hooks, "invoice.paid") == ["invoice.paid"]
    assert calls_for(hooks, "invoice.payment_failed") == ["invoice.payment_failed"]
    assert calls_for(hooks, "invoiceitem.created") == []
    assert calls_for(hooks, "invoice_payment.paid") == []


def test_star_several_types_and_order():
    hooks = StripeHooks()
    order: list[str] = []

    @hooks.on("customer.subscription.updated")
    def exact(event, seen, **kwargs):
        seen.append("exact")

    @hooks.on("customer")
    def prefix_a(event, seen, **kwargs):
        seen.append("customer-a")

    @hooks.on("*")
    def star(event, seen, **kwargs):
        seen.append("*")

    @hooks.on("customer.subscription")
    def middle(event, seen, **kwargs):
        seen.append("customer.subscription")

    @hooks.on("customer")
    def prefix_b(event, seen, **kwargs):
        seen.append("customer-b")

    @hooks.on("price", "product")
    def catalog(event, seen, **kwargs):
        seen.append("catalog")

    order = calls_for(hooks, "customer.subscription.updated")
    assert order == ["*", "customer-a", "customer-b", "customer.subscription", "exact"]
    assert calls_for(hooks, "price.created") == ["*", "catalog"]
    assert calls_for(hooks, "product.deleted") == ["*", "catalog"]
    assert calls_for(hooks, "charge.succeeded") == ["*"]


def test_pattern_with_star_suffix_is_a_prefix():
    hooks = StripeHooks()

    @hooks.on("customer.subscription.*")
    def sub(event, seen, **kwargs):
        seen.append(event.type)

    assert calls_for(hooks, "customer.subscription.deleted") == ["customer.subscription.deleted"]
    assert calls_for(hooks, "customer.created") == []


def test_handlers_defined_in_a_function_are_not_garbage_collected():
    hooks = StripeHooks()

    def register():
        @hooks.on("charge")
        def nested(event, seen, **kwargs):
            seen.append("nested")

        hooks.on("charge")(lambda event, seen, **kwargs: seen.append("lambda"))

    register()
    gc.collect()
    assert calls_for(hooks, "charge.refunded") == ["nested", "lambda"]


def test_signal_is_the_blinker_signal_behind_on():
    hooks = StripeHooks()
    seen: list[str] = []

    def direct(event, **kwargs):
        seen.append(event.type)

    hooks.signal("payout").connect(direct, weak=False)
    hooks.registry.dispatch(event("payout.paid"))
    assert seen == ["payout.paid"]
    assert hooks.signal("payout") is hooks.signal("payout")
    hooks.signal("payout").disconnect(direct)
    hooks.registry.dispatch(event("payout.paid"))
    assert seen == ["payout.paid"]


def test_typo_warns_with_closest_name():
    hooks = StripeHooks()
    with pytest.warns(UnknownEventTypeWarning, match="did you mean 'customer.subscription"):
        hooks.on("customer.subscriptions")(lambda event, **kw: None)
    with pytest.warns(UnknownEventTypeWarning, match="'invoce'"):
        hooks.on("invoce")(lambda event, **kw: None)


def test_the_warning_points_at_the_decorator_line():
    hooks = StripeHooks()
    with pytest.warns(UnknownEventTypeWarning) as caught:

        @hooks.on("invoce.paid")
        def handler(event, **kwargs):
            pass

    with pytest.warns(UnknownEventTypeWarning) as direct:
        hooks.registry.on("custmer")
    assert [w.filename for w in [*caught, *direct]] == [__file__, __file__]
    assert caught[0].lineno == handler.__code__.co_firstlineno  # the @hooks.on line


def test_real_names_and_prefixes_do_not_warn():
    hooks = StripeHooks()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hooks.on("*", "customer", "customer.subscription", "checkout.session.completed")(
            lambda event, **kw: None
        )


def test_no_event_types_is_an_error():
    with pytest.raises(TypeError):
        StripeHooks().on()


def test_event_types_come_from_stripe_python():
    from stripe.params import WebhookEndpointCreateParams

    names = all_event_types()
    assert "customer.subscription.trial_will_end" in names and "*" not in names
    annotation = str(WebhookEndpointCreateParams.__annotations__["enabled_events"])
    assert all(f"'{name}'" in annotation for name in names)
    assert matching("customer.subscription.*") == [
        n for n in names if n.startswith("customer.subscription.")
    ]


def test_dispatch_cost_does_not_depend_on_unrelated_subscriptions():
    """Sending an event consults only the signals of its own prefixes."""
    hooks = StripeHooks()

    @hooks.on("customer")
    def mine(event, seen, **kwargs):
        seen.append("mine")

    route_before = hooks.registry.signals_for("customer.created")
    for name in all_event_types():
        if not name.startswith("customer"):
            hooks.on(name)(lambda event, seen, **kwargs: seen.append("other"))
    assert hooks.registry.signals_for("customer.created") == route_before
    assert len(route_before) == 1
    assert calls_for(hooks, "customer.created") == ["mine"]
