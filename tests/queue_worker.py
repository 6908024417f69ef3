"""``celery -A queue_worker worker``: the queue tests' worker, on :mod:`queue_app`."""

from queue_app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
