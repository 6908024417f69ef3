"""``POST {STRIPE_HOOKS_URL_PREFIX}/webhook/<uuid>/``: read the request, call the pipeline."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app, request

from . import signals, tracing
from .models import DUPLICATE, FAILED, PROCESSED, QUEUED, REJECTED
from .processing import BUSY, MISSING, UNAVAILABLE

if TYPE_CHECKING:
    from .state import State

#: What Stripe is answered for each outcome: 2xx once the event is durable; 500 and 503 make
#: Stripe retry.
STATUS = {
    PROCESSED: 200,
    DUPLICATE: 200,
    QUEUED: 200,
    REJECTED: 400,
    MISSING: 404,
    BUSY: 409,
    FAILED: 500,
    UNAVAILABLE: 503,
}


def create_blueprint(state: State) -> Blueprint:
    bp = Blueprint("stripe_hooks_webhook", __name__, url_prefix=state.url_prefix or None)
    max_body = state.max_body
    receive = tracing.receiver(state)  # the pipeline, in a span when tracing is on
    finished = signals.delivery_finished

    @bp.post("/webhook/<uuid:endpoint_uuid>/", strict_slashes=False)
    def webhook(endpoint_uuid: uuid.UUID) -> Response:
        length = request.content_length
        if length is not None and length > max_body:
            return _text(413, "body too large")
        # Read at most one byte past the limit: a body without Content-Length (chunked)
        # is never read whole when it is too large.
        body = request.stream.read(max_body + 1)
        if len(body) > max_body:
            return _text(413, "body too large")
        result = receive(state, endpoint_uuid, body, request.headers, request.remote_addr)
        status = STATUS[result.outcome]
        if finished.receivers:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            finished.send(app, result=result, status=status)
        return _text(status, result.reason or result.outcome)

    return bp


def _text(status: int, text: str) -> Response:
    return Response(text + "\n", status=status, mimetype="text/plain")
