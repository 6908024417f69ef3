"""``POST {STRIPE_HOOKS_URL_PREFIX}/webhook/<uuid>/``: read the request, call the pipeline."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app, request

from . import signals
from .outcomes import (
    BUSY,
    DEAD,
    DUPLICATE,
    FAILED,
    FORBIDDEN,
    IGNORED,
    MISSING,
    PAUSED,
    PROCESSED,
    QUEUED,
    REFUSED,
    REJECTED,
    RETRYING,
    SHADOW,
    TWIN,
    UNAVAILABLE,
)
from .pipeline import receiver

if TYPE_CHECKING:
    from .state import State

#: What Stripe is answered for each outcome: 2xx once the event is durable and needs no retry
#: from Stripe (an event ``dead`` here is answered 200: more deliveries would not help it, and
#: Stripe disables endpoints that keep failing); 500 and 503 make Stripe retry.
STATUS = {
    PROCESSED: 200,
    DUPLICATE: 200,
    QUEUED: 200,
    PAUSED: 200,
    IGNORED: 200,
    DEAD: 200,
    TWIN: 200,
    SHADOW: 200,
    RETRYING: 503,
    REJECTED: 400,
    FORBIDDEN: 403,
    MISSING: 404,
    BUSY: 409,
    FAILED: 500,
    UNAVAILABLE: 503,
}


def create_blueprint(state: State) -> Blueprint:
    bp = Blueprint("stripe_hooks_webhook", __name__, url_prefix=state.url_prefix or None)
    max_body = state.max_body
    receive = receiver(state)  # the pipeline, in a span when tracing is on
    finished, rejected = signals.delivery_finished, signals.delivery_rejected

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
        if result.outcome in REFUSED and rejected.receivers:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            rejected.send(app, endpoint=result.endpoint, status=status, reason=result.reason)
        if finished.receivers:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            finished.send(app, result=result, status=status)
        response = _text(status, result.reason or result.outcome)
        if result.retry_after is not None:
            response.headers["Retry-After"] = str(max(1, round(result.retry_after)))
        return response

    # The URL with and without its trailing slash, as two rules: with strict_slashes=False,
    # Werkzeug answers OPTIONS without an Allow header and GET with 404 on the form without.
    for rule in ("/webhook/<uuid:endpoint_uuid>/", "/webhook/<uuid:endpoint_uuid>"):
        bp.add_url_rule(rule, view_func=webhook, methods=["POST"])
    return bp


def _text(status: int, text: str) -> Response:
    return Response(text + "\n", status=status, mimetype="text/plain")
