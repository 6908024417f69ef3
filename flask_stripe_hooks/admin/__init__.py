"""The admin pages: endpoints (created and changed on Stripe), events and deliveries.

Mounted at ``STRIPE_HOOKS_ADMIN_URL_PREFIX`` (``None``: no admin). Every page
asks ``STRIPE_HOOKS_ADMIN_AUTH`` first (a callable, or its dotted path, called with no
arguments during the request): ``True`` lets the request through (a non-empty ``str`` too,
naming the user for the audit trail of endpoint changes), a response (such as a
redirect to a login page) is sent as is, anything else answers 403. Without it, every page
answers 403 with a short page that says how to set it.

Every POST needs a valid CSRF token, whether or not the app set up ``CSRFProtect``. The
views (:mod:`.views`) are thin: endpoints are changed by :mod:`flask_stripe_hooks.endpoints`,
events are processed again by :func:`flask_stripe_hooks.recovery.process_again` (through the
queue in queue mode); the forms are in :mod:`.forms`. Templates live in
``templates/stripe_hooks/admin/`` beside this file; an app overrides one by putting a file at
the same path in its own templates folder (``base.html`` has a block, ``app_links``, for links
back to the app).

As in Flask-Security's ``views.py``, the views are module-level functions that read the app's
state through :func:`flask_stripe_hooks.state.get_state`; :func:`create_blueprint` makes a
fresh blueprint for each ``init_app`` and wires them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, current_app, g, request
from flask_wtf.csrf import validate_csrf
from sqlalchemy.exc import DBAPIError
from werkzeug.wrappers import Response
from wtforms.validators import ValidationError

from .. import paging
from ..state import get_state
from ..utils import mask, schema_missing, upgrade_hint
from . import bulk, views
from .views import NOT_ALLOWED, fmt_time, message_page, page_url

if TYPE_CHECKING:
    from ..state import State

#: Sent with every admin response (unless the app set them already).
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def create_blueprint(state: State) -> Blueprint:
    """A fresh admin blueprint for one ``init_app``; the views read the app's state."""
    bp = Blueprint(
        "stripe_hooks_admin",
        __name__,
        url_prefix=state.admin_url_prefix or None,
        template_folder="templates",
        static_folder="static",
        static_url_path="/_static",
    )
    bp.before_request(guard)
    bp.after_request(protect)
    bp.context_processor(helpers)
    bp.errorhandler(404)(not_found)
    bp.errorhandler(DBAPIError)(no_tables)
    bp.route("/")(views.endpoint_list)
    bp.route("/endpoints/new", methods=["GET", "POST"])(views.endpoint_create)
    bp.route("/endpoints/<uuid:endpoint_uuid>")(views.endpoint_detail)
    bp.route("/endpoints/<uuid:endpoint_uuid>/status", methods=["POST"])(views.endpoint_status)
    bp.route("/endpoints/<uuid:endpoint_uuid>/events", methods=["POST"])(views.endpoint_events)
    bp.route("/endpoints/<uuid:endpoint_uuid>/secret", methods=["POST"])(views.endpoint_secret)
    bp.route("/endpoints/<uuid:endpoint_uuid>/delete", methods=["GET", "POST"])(
        views.endpoint_delete
    )
    bp.route("/events/")(views.event_list)
    bp.route("/events/process-failed", methods=["GET", "POST"])(bulk.events_process_failed)
    bp.route("/events/<event_id>")(views.event_detail)
    bp.route("/events/<event_id>/process", methods=["POST"])(views.event_process)
    bp.route("/deliveries/")(views.delivery_list)
    bp.route("/health")(views.health_page)
    return bp


# -- every request ------------------------------------------------------------------------


def guard() -> Any:
    """``STRIPE_HOOKS_ADMIN_AUTH`` first, then the CSRF token of a POST."""
    if request.endpoint == "stripe_hooks_admin.static":
        return None
    auth = get_state().admin_auth
    if auth is None:
        return message_page(403, "forbidden_setup.html")
    allowed = auth()
    if isinstance(allowed, Response):
        return allowed
    if isinstance(allowed, str) and allowed:  # allowed, and this is who (the audit trail)
        g.stripe_hooks_actor = allowed
    elif allowed is True:
        g.stripe_hooks_actor = "admin"
    else:
        return message_page(403, "message.html", title="Forbidden", text=NOT_ALLOWED)
    if not current_app.secret_key:  # its forms cannot work: say so, not Flask-WTF's 500
        return message_page(500, "secret_key_setup.html")
    if request.method not in ("GET", "HEAD", "OPTIONS") and not g.get("csrf_valid"):
        field = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
        try:
            validate_csrf(request.form.get(field) or request.headers.get("X-CSRFToken"))
        except ValidationError as exc:
            text = f"{exc.args[0]} Reload the page and send the form again."
            return message_page(400, "message.html", title="Form refused", text=text)
        g.csrf_valid = True  # the forms need not check it again
    return None


def protect(response: Response) -> Response:
    # CSRF tokens do not stop a page of another site from framing these buttons.
    for header, value in SECURITY_HEADERS.items():
        response.headers.setdefault(header, value)
    return response


def helpers() -> dict[str, Any]:
    return {
        "fmt_time": fmt_time,
        "mask": mask,
        "page_url": page_url,
        "count_label": paging.count_label,
    }


def no_tables(exc: DBAPIError) -> Any:
    """A page read before the migration ran says what to run; other errors stay errors."""
    said = schema_missing(exc)
    if said is None:
        raise exc
    get_state().db.session.rollback()
    return message_page(503, "message.html", title="Tables missing", text=upgrade_hint(said))


def not_found(exc: Any) -> Any:
    text = getattr(exc, "description", "") or "Not found."
    return message_page(404, "message.html", title="Not found", text=text)
