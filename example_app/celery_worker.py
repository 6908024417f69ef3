"""The example app in queue mode: Celery runs the handlers, with Redis as the broker.

    export EXAMPLE_CELERY_BROKER_URL=redis://localhost:6379/0
    flask --app example_app run                                  # acknowledges at once
    celery -A example_app.celery_worker:celery_app worker -l INFO  # runs the handlers
    celery -A example_app.celery_worker:celery_app beat          # the sweeper, every minute

With ``EXAMPLE_CELERY_BROKER_URL`` set, ``create_app`` sets ``CELERY`` and
``STRIPE_HOOKS_EVENT_CALLBACK = "flask_stripe_hooks.celery.enqueue"`` and calls
``make_celery(app)``; the web process and the worker both run this same app.
"""

from __future__ import annotations

from example_app import create_app

flask_app = create_app()
celery_app = flask_app.extensions.get("celery")
if celery_app is None:
    raise RuntimeError(
        "Set EXAMPLE_CELERY_BROKER_URL (for example redis://localhost:6379/0) to run the worker."
    )

# make_celery put the sweeper in the beat schedule (flask_stripe_hooks.celery.BEAT_SCHEDULE):
# every minute, the events pending for over two minutes (a lost message, a worker that died).
