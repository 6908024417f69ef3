"""A real login for the Stripe webhooks admin: one administrator, from the app's config.

    EXAMPLE_ADMIN_PASSWORD=choose-one flask --app example_app run

then open http://127.0.0.1:5000/stripe-hooks/admin/ and log in as ``admin`` (or
``EXAMPLE_ADMIN_USERNAME``). Without a password the admin stays locked (403). An app with
users of its own would check ``flask_login.current_user`` in :func:`admin_required` instead.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])
    submit = SubmitField("Log in")


def admin_required() -> bool | Response:
    """``STRIPE_HOOKS_ADMIN_AUTH``: logged in → allowed; else the login page (or 403 on a POST)."""
    if session.get("admin"):
        return True
    if request.method != "GET":
        return False
    here = request.full_path if request.query_string else request.path  # no stray "?"
    return redirect(url_for("auth.login", next=here))


def _safe_next(target: str | None) -> str:
    """Only a path on this site, never another host.

    Browsers drop tabs and newlines from a URL and read ``\\`` as ``/``, so
    ``/<tab>/evil.example`` and ``/\\evil.example`` lead to ``//evil.example``: a target with
    a control character or a backslash is refused whole. The rest must start with a single
    ``/`` and parse as a path alone, with no scheme and no host (``///evil.example`` has no
    host for ``urlsplit``, and one for a browser; ``urlsplit`` drops a leading space).
    """
    if target and target.isprintable() and "\\" not in target:
        parts = urlsplit(target)
        path_only = not (parts.scheme or parts.netloc) and parts.path.startswith("/")
        if path_only and target.startswith("/") and not target.startswith("//"):
            return target
    return url_for("stripe_hooks_admin.endpoint_list")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    form = LoginForm()
    if form.validate_on_submit():
        # str(): from_prefixed_env reads EXAMPLE_ADMIN_PASSWORD=1234 as a number.
        username = str(current_app.config.get("ADMIN_USERNAME", "admin"))
        password = str(current_app.config["ADMIN_PASSWORD"])
        if hmac.compare_digest(form.username.data.encode(), username.encode()) & (
            hmac.compare_digest(form.password.data.encode(), password.encode())
        ):
            session.clear()  # a fresh session on login
            session["admin"] = username
            return redirect(_safe_next(request.args.get("next")))
        failed = "Wrong user name or password."
    else:
        failed = None
    status = 401 if failed or form.errors else 200
    return render_template("login.html", form=form, failed=failed), status


@bp.route("/logout", methods=["GET", "POST"])  # linked from the admin's header (templates/)
def logout() -> Any:
    session.clear()
    return redirect(url_for("auth.login"))
