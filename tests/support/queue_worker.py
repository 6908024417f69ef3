"""``celery -A queue_worker worker``: the queue tests' worker, on :mod:`queue_app`."""

from flask_stripe_hooks import signals

from .queue_app import create_app, log_dead

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
signals.event_dead.connect(log_dead, weak=False)
