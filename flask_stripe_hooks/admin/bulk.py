"""The admin's bulk "process again": the failed and dead events the events list's filter
shows, run again after a confirmation (through the queue in queue mode)."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from .. import recovery
from ..state import get_state
from .forms import EventFilterForm, ProcessFailedForm
from .views import T, event_filters

#: Failed events processed again by one bulk "process again" (the rest: the next click).
BULK = 200


def events_process_failed() -> Any:
    """The failed and dead events the list's filter shows, processed again (through the
    queue in queue mode): a GET shows how many and asks, a POST does it, at most
    :data:`BULK` at a time, oldest first."""
    state = get_state()
    filters = EventFilterForm(request.args)
    if not filters.validate():
        abort(400, "These filters are not valid.")
    ids = recovery.failed_ids(state, limit=BULK, **event_filters(filters))
    total = recovery.failed_count(state, **event_filters(filters))
    form = ProcessFailedForm()
    queued = state.event_callback is not None
    if form.validate_on_submit():
        summary = recovery.process_failed(state, ids)
        rest = "; more remain: press it again" if total > len(ids) else ""
        verb = "Queued" if queued else "Processed"
        flash(
            f"{verb} {len(ids)} failed event(s) again: {summary.line()}{rest}.",
            "error" if summary.failed else "success",
        )
        back: dict[str, Any] = request.args.to_dict()
        return redirect(url_for(".event_list", **back))
    return render_template(
        T + "process_failed.html",
        form=form,
        ids=ids,
        total=total,
        queued=queued,
        described=[f"{f.label.text.lower()} {f.data}" for f in filters if f.data],
    )
