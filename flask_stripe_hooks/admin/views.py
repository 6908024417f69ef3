"""The admin's pages: endpoints, events, deliveries and health. Wired by
:func:`flask_stripe_hooks.admin.create_blueprint`."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import (
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from wtforms import Form

from .. import audit, endpoints, health, paging, recovery
from ..crypto import sealed, unseal
from ..errors import BadCursor, StripeHooksError, UnreadableSecret
from ..events import Event
from ..models import StripeEvent, WebhookDelivery, WebhookEndpoint, active_secrets
from ..outcomes import DEAD, FAILED, MISSING, QUEUED, REJECTED, TWIN
from ..state import get_state
from ..utils import fmt_time as utc_time
from ..utils import mask, parse_duration, utcnow
from .forms import (
    CreateEndpointForm,
    DeleteForm,
    DeliveryFilterForm,
    EventFilterForm,
    EventsForm,
    ProcessForm,
    SecretForm,
    StatusForm,
    choices,
    event_choices,
)

if TYPE_CHECKING:
    pass

PER_PAGE = 50
#: Other events about the same object shown on an event's page (the rest: its list).
RELATED = 10
T = "stripe_hooks/admin/"

#: Stripe's parameter names (and the library's) → the form field that shows the error.
FORM_FIELDS = {
    "url": "base_url",
    "base_url": "base_url",
    "enabled_events": "events",
    "events": "events",
    "api_version": "api_version",
    "description": "description",
    "metadata": "metadata",
    "connect": "connect",
    "account": "account",
    "livemode": "mode",
    "mode": "mode",
    "secret": "secret",
    "keep_old_for": "keep_old_for",
    "payload": "payload",
}


def _session() -> Any:
    return get_state().db.session


# -- endpoints ----------------------------------------------------------------------------


def endpoint_list() -> str:
    session = _session()
    rows = session.execute(sa.select(WebhookEndpoint).order_by(WebhookEndpoint.id)).scalars()
    since = utcnow() - timedelta(hours=24)
    d = WebhookDelivery
    listed = []
    for e in rows:  # each figure one short index range, whatever the history
        last = session.execute(
            sa.select(d.received_at)
            .where(d.endpoint_id == e.id)
            .order_by(d.received_at.desc())
            .limit(1)
        ).scalar()
        failures = sum(
            paging.capped_count(
                session,
                sa.select(d.id).where(
                    d.endpoint_id == e.id, d.outcome == outcome, d.received_at >= since
                ),
                d.id,
            )
            for outcome in (FAILED, REJECTED)
        )
        listed.append((e, endpoint_url(e), last, failures))
    return render_template(T + "endpoints.html", endpoints=listed)


def endpoint_create() -> Any:
    form = CreateEndpointForm()
    accounts = sorted(get_state().accounts)
    form.account.choices = choices(("", "Default account"), *accounts)
    form.events.choices = event_choices(thin=None)  # snapshot and thin types
    if request.method == "GET":
        form.base_url.data = request.host_url.rstrip("/")
    elif form.validate_on_submit():
        try:
            endpoint = endpoints.create_endpoint(
                base_url=form.base_url.data,
                events=form.events.data,
                livemode=form.mode.data == "live",
                account=form.account.data or "",
                api_version=form.api_version.data or None,
                description=form.description.data or "",
                metadata=form.metadata.data or None,
                connect=form.connect.data,
                payload=form.payload.data,
            )
        except StripeHooksError as exc:
            show_error(form, exc)
        else:
            flash(
                f"Created {endpoint.mode}-mode endpoint {endpoint.uuid}"
                f" ({endpoint.stripe_id} on Stripe); its signing secret is stored.",
                "success",
            )
            return redirect(url_for(".endpoint_detail", endpoint_uuid=endpoint.uuid))
    warning = None
    if not form.base_url.errors:  # an error under the field says it already
        try:
            endpoints.check_base_url(form.base_url.data or "")
        except endpoints.EndpointError as exc:
            warning = str(exc)
    status = 400 if form.errors else 200
    return render_template(T + "endpoint_new.html", form=form, warning=warning), status


def load(endpoint_uuid: uuid.UUID) -> WebhookEndpoint:
    try:
        return endpoints.get_endpoint(endpoint_uuid)
    except endpoints.EndpointError:
        abort(404, "No such endpoint.")


def detail(endpoint: WebhookEndpoint, status: int = 200, **forms: Any) -> Any:
    forms.setdefault("status_form", StatusForm(formdata=None))
    forms.setdefault("events_form", EventsForm(formdata=None, events=endpoint.enabled_events))
    forms["events_form"].events.choices = event_choices(thin=endpoint.thin)
    forms.setdefault("secret_form", SecretForm(formdata=None))
    deliveries = (
        _session()
        .execute(
            sa.select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id)
            .order_by(WebhookDelivery.received_at.desc(), WebhookDelivery.id.desc())
            .limit(10)
        )
        .scalars()
    )
    now = utcnow()
    active = set(active_secrets(endpoint.secrets, now))
    secrets = [
        (_masked(s["secret"]), s.get("expires_at"), s["secret"] in active)
        for s in reversed(endpoint.secrets or [])
    ]
    return render_template(
        T + "endpoint.html",
        endpoint=endpoint,
        url=endpoint_url(endpoint),
        secrets=secrets,
        deliveries=list(deliveries),
        changes=audit.entries(_session(), endpoint.uuid, 20),
        describe=audit.describe,
        **forms,
    ), status


def _masked(stored: str) -> str:
    try:
        shown = mask(unseal(stored))
    except UnreadableSecret:
        return "cannot be decrypted with STRIPE_HOOKS_ENCRYPTION_KEY"
    return shown + " (encrypted)" if sealed(stored) else shown


def endpoint_detail(endpoint_uuid: uuid.UUID) -> Any:
    return detail(load(endpoint_uuid))


def change(
    endpoint: WebhookEndpoint, form: Form, name: str, action: Callable[[], Any], done: str
) -> Any:
    """Validate ``form``, run ``action``; show its error on the form or flash ``done``."""
    if form.validate():
        try:
            action()
        except StripeHooksError as exc:
            _session().rollback()
            show_error(form, exc)
        else:
            flash(done, "success")
            return redirect(url_for(".endpoint_detail", endpoint_uuid=endpoint.uuid))
    return detail(endpoint, 400, **{name: form})


def endpoint_status(endpoint_uuid: uuid.UUID) -> Any:
    endpoint, form = load(endpoint_uuid), StatusForm()
    enable = bool(form.enable.data)
    return change(
        endpoint,
        form,
        "status_form",
        lambda: endpoints.update_endpoint(endpoint, enabled=enable),
        "Endpoint enabled." if enable else "Endpoint disabled.",
    )


def endpoint_events(endpoint_uuid: uuid.UUID) -> Any:
    endpoint, form = load(endpoint_uuid), EventsForm()
    return change(
        endpoint,
        form,
        "events_form",
        lambda: endpoints.update_endpoint(endpoint, events=form.events.data),
        "Enabled events saved.",
    )


def endpoint_secret(endpoint_uuid: uuid.UUID) -> Any:
    endpoint, form = load(endpoint_uuid), SecretForm()

    def rotate() -> None:
        keep = parse_duration(form.keep_old_for.data or "0")
        endpoints.set_secret(endpoint, form.secret.data.strip(), keep_old_for=keep)

    return change(endpoint, form, "secret_form", rotate, "Signing secret rotated.")


def endpoint_delete(endpoint_uuid: uuid.UUID) -> Any:
    endpoint, form = load(endpoint_uuid), DeleteForm()
    if form.validate_on_submit():
        try:
            endpoints.delete_endpoint(endpoint, keep_remote=form.keep_remote.data)
        except StripeHooksError as exc:
            _session().rollback()
            show_error(form, exc)
        else:
            flash(f"Endpoint {endpoint_uuid} deleted.", "success")
            return redirect(url_for(".endpoint_list"))
    status = 400 if form.errors else 200
    return render_template(
        T + "endpoint_delete.html", endpoint=endpoint, url=endpoint_url(endpoint), form=form
    ), status


# -- events -------------------------------------------------------------------------------


def event_list() -> Any:
    state = get_state()
    form = EventFilterForm(request.args)
    query = sa.select(StripeEvent)
    valid = form.validate()
    # each filter an index range (one connected account's, one object's events...)
    where = recovery.event_filter(**event_filters(form)) if valid else [sa.false()]
    query = query.where(*where)
    page = keyset(query, StripeEvent)
    failing = form.status.data in (FAILED, DEAD) or any(
        e.status in (FAILED, DEAD) for e in page.items
    )
    return render_template(
        T + "events.html",
        form=form,
        page=page,
        failing=failing and valid,
        filter_args={f.name: f.data for f in form if f.data},
        counts=recovery.counts(state),
        filtered=filtered(form),
    ), 200 if valid else 400


def event_filters(form: EventFilterForm) -> dict[str, Any]:
    """A valid filter form as :func:`~flask_stripe_hooks.recovery.event_filter`'s keywords."""
    return {
        "type_prefix": form.type.data,
        "status": form.status.data,
        "livemode": None if not form.mode.data else form.mode.data == "live",
        "account": form.account.data or None,
        "object_id": (form.object.data or "").strip() or None,
    }


def event_detail(event_id: str) -> Any:
    session = _session()
    event = session.get(StripeEvent, event_id)
    if event is None:
        abort(404, "No such event.")
    deliveries = session.execute(
        sa.select(WebhookDelivery, WebhookEndpoint.uuid)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.event_id == event_id)
        .order_by(WebhookDelivery.id)
    ).all()
    payload = json.dumps(Event.from_row(event).to_dict(), indent=2, ensure_ascii=False, default=str)
    twin = session.get(StripeEvent, event.twin_id) if event.twin_id else None
    related: list[Any] = []
    if event.object_id:  # the newest others about its object: one range of their index
        related = list(
            session.execute(
                sa.select(StripeEvent)
                .where(StripeEvent.object_id == event.object_id, StripeEvent.id != event.id)
                .order_by(StripeEvent.received_at.desc(), StripeEvent.id.desc())
                .limit(RELATED)
            ).scalars()
        )
    runs = [
        (f"Delivery at {fmt_time(d.received_at)}", d.outcome, d.handlers)
        for d, _ in deliveries
        if d.handlers is not None
    ]
    if event.handlers is not None:
        runs.append(("Latest run by a worker or by hand", event.status, event.handlers))
    return render_template(
        T + "event.html",
        event=event,
        twin=twin,
        payload=payload,
        deliveries=deliveries,
        runs=runs,
        subscribed=get_state().registry.handlers_for(event.type),
        related=related,
        related_more=len(related) == RELATED,
        form=ProcessForm(formdata=None),
    )


def event_process(event_id: str) -> Any:
    result = recovery.process_again(get_state(), event_id)
    if result.outcome == MISSING:
        abort(404, "No such event.")
    if result.outcome == TWIN:
        flash(f"Event {event_id} is not run: {result.reason}; process that one again.", "error")
    elif result.outcome == QUEUED:
        flash(f"Event {event_id} queued to be processed again by a worker.", "success")
    elif result.ok and result.outcome != DEAD:
        flash(f"Event {event_id} processed again: {result.outcome}.", "success")
    else:
        flash(f"Event {event_id} failed again ({result.reason or result.outcome}).", "error")
    return redirect(url_for(".event_detail", event_id=event_id))


# -- deliveries ---------------------------------------------------------------------------


def delivery_list() -> Any:
    form = DeliveryFilterForm(request.args)
    d = WebhookDelivery
    query = sa.select(d)
    valid = form.validate()
    if valid and form.endpoint_uuid.data:
        try:
            endpoint_uuid = uuid.UUID(form.endpoint_uuid.data.strip())
        except ValueError:
            form.endpoint_uuid.errors = ["Not an endpoint uuid."]
            valid = False
        else:
            ids = sa.select(WebhookEndpoint.id).where(WebhookEndpoint.uuid == endpoint_uuid)
            query = query.where(d.endpoint_id == ids.scalar_subquery())
    if valid and form.outcome.data:
        query = query.where(d.outcome == form.outcome.data)
    if not valid:
        query = query.where(sa.false())
    page = keyset(query, d)
    uuids = dict(_session().execute(sa.select(WebhookEndpoint.id, WebhookEndpoint.uuid)).all())
    return render_template(
        T + "deliveries.html", form=form, page=page, uuids=uuids, filtered=filtered(form)
    ), 200 if valid else 400


# -- helpers ------------------------------------------------------------------------------


NOT_ALLOWED = "You are not allowed to see this page. Log in with an account that may."


def health_page() -> Any:
    """What ``flask stripe-hooks doctor`` says, without its fixes or its signal."""
    findings = health.check_all(get_state())
    return render_template(
        "stripe_hooks/admin/health.html",
        findings=findings,
        problems=health.problems(findings),
    )


def message_page(status: int, template: str, **context: Any) -> Any:
    return render_template(T + template, **context), status


def show_error(form: Form, exc: Exception) -> None:
    """Put an error from :mod:`.endpoints` or Stripe on the field it is about, or on the
    form as a whole."""
    message = getattr(exc, "message", None) or str(exc)
    raw = getattr(exc, "field", None) or ""
    name = FORM_FIELDS.get(re.split(r"[\[.]", raw, maxsplit=1)[0], raw)
    field = form._fields.get(name) if name else None
    if field is not None and name != "csrf_token":
        field.errors = [*field.errors, message]
    else:
        form.form_errors.append(message)


def endpoint_url(endpoint: WebhookEndpoint) -> str:
    """The URL Stripe posts to: stored for endpoints made on Stripe, else this server's."""
    if endpoint.url:
        return endpoint.url
    return request.host_url.rstrip("/") + get_state().webhook_path(endpoint.uuid)


def fmt_time(value: datetime | str | None) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return utc_time(value)


def keyset(query: sa.Select[Any], model: Any) -> paging.Page:
    """The page of ``query`` that the request's ``before=`` or ``after=`` asks for."""
    try:
        return paging.keyset_page(
            _session(),
            query,
            model.received_at,
            model.id,
            per_page=PER_PAGE,
            before=request.args.get("before"),
            after=request.args.get("after"),
        )
    except BadCursor as exc:
        abort(
            make_response(message_page(400, "message.html", title="Bad page link", text=str(exc)))
        )


def page_url(**cursor: str) -> str:
    """This page's URL with its filters, at another page (``before=`` or ``after=``)."""
    args: Mapping[str, Any] = {
        **{k: v for k, v in request.args.items() if k not in ("before", "after", "page")},
        **cursor,
    }
    return url_for(request.endpoint or "", **(request.view_args or {}), **args)


def filtered(form: Form) -> bool:
    """Whether a list page's filter form narrows the list (an empty list says so)."""
    return any(field.data for field in form)
