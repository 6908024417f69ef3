"""``POST {STRIPE_HOOKS_URL_PREFIX}/webhook/<uuid>/``: read the request, call the pipeline."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from flask import Blueprint, Response, request

from .models import DUPLICATE, FAILED, PROCESSED, QUEUED, REJECTED
from .processing import BUSY, MISSING, UNAVAILABLE, receive

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
        return _text(STATUS[result.outcome], result.reason or result.outcome)

    # The URL with and without its trailing slash, as two rules: with strict_slashes=False,
    # Werkzeug answers OPTIONS without an Allow header and GET with 404 on the form without.
    for rule in ("/webhook/<uuid:endpoint_uuid>/", "/webhook/<uuid:endpoint_uuid>"):
        bp.add_url_rule(rule, view_func=webhook, methods=["POST"])
    return bp


def _text(status: int, text: str) -> Response:
    return Response(text + "\n", status=status, mimetype="text/plain")
