"""The user's handler, connected the way dj-stripe 2.11 documents (``djstripe_receiver``).

dj-stripe's own handlers sync each object with a call to the Stripe API (``api_retrieve``);
they are disconnected here, so dj-stripe does the same work as the others: store the
trigger and the event, call one user handler that writes one row. That favours dj-stripe.
"""

from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "djstripe_peer.benchapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import inspect
        import sys

        from djstripe import event_handlers
        from djstripe.event_handlers import djstripe_receiver
        from djstripe.models import Event
        from djstripe.signals import WEBHOOK_SIGNALS

        sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[2]))
        from payloads import TYPES

        from .models import Handled

        builtin = [
            fn
            for name, fn in inspect.getmembers(event_handlers, inspect.isfunction)
            if name.startswith("handle_")
        ]
        for signal in WEBHOOK_SIGNALS.values():
            for fn in builtin:
                signal.disconnect(fn, sender=Event)

        @djstripe_receiver(TYPES)
        def on_event(sender, event, **kwargs):
            Handled.objects.create(event_id=event.id, type=event.type)

        self.on_event = on_event  # Django signals hold receivers weakly
