"""The admin's bulk "process again": the failed events a filter shows, after a confirmation,
run now or, in queue mode, handed to the queue."""

from __future__ import annotations

import html
import re
from typing import Any

from flask_stripe_hooks.models import StripeEvent
from flask_stripe_hooks.testing import build_event, create_endpoint, deliver

from support.admin_support import ADMIN, allow
from support.admin_support import page_text as text
from support.helpers import rows

QUEUED: list[str] = []


def enqueue(event_id: str) -> None:
    QUEUED.append(event_id)


def token(page: Any) -> str:
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text)
    assert found, "no form"
    return found.group(1)


def statuses(app: Any) -> dict[str, str]:
    return {e.id: e.status for e in rows(app, StripeEvent)}


def failing_history(app: Any, hooks: Any) -> tuple[list[str], str, dict[str, bool]]:
    """Three failed invoice events, one failed customer event, one processed invoice event;
    ``broken["now"] = False`` mends the handler."""
    broken = {"now": True}

    @hooks.on("invoice.paid", "customer.created")
    def flaky(event: Any, **kwargs: Any) -> None:
        if broken["now"]:
            raise RuntimeError("the ledger is locked")

    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"])
    client = app.test_client()
    invoices = [build_event("invoice.paid") for _ in range(3)]
    customer = build_event("customer.created")
    for event in [*invoices, customer]:
        assert deliver(client, endpoint, event).status_code == 500
    assert deliver(client, endpoint, build_event("invoice.finalized")).status_code == 200
    return [e["id"] for e in invoices], customer["id"], broken


def test_the_failed_events_of_a_filter_run_again_after_a_confirmation(app_factory, hooks):
    app = app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow)
    invoices, customer, broken = failing_history(app, hooks)
    client = app.test_client()

    listing = client.get(ADMIN + "/events/?type=invoice")
    link = re.search(r'id="process-failed" href="([^"]+)"', listing.text)
    assert link, "no bulk link while failed events are listed"
    url = html.unescape(link.group(1))
    assert url == ADMIN + "/events/process-failed?type=invoice"
    assert 'id="process-failed"' not in client.get(ADMIN + "/events/?status=processed").text

    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "3 failed or dead events match type invoice." in text(confirm)
    assert statuses(app)[invoices[0]] == "failed"  # asking changes nothing

    refused = client.post(url, data={"submit": "Process them again"})  # no CSRF token
    assert refused.status_code == 400
    assert set(statuses(app).values()) == {"failed", "processed"}

    broken["now"] = False
    done = client.post(url, data={"csrf_token": token(confirm)}, follow_redirects=True)
    assert done.status_code == 200
    assert done.request.path == ADMIN + "/events/" and done.request.args["type"] == "invoice"
    assert "Processed 3 failed event(s) again: 3 processed." in text(done)
    after = statuses(app)
    assert [after[i] for i in invoices] == ["processed"] * 3
    assert after[customer] == "failed"  # not shown by the filter: not touched


def test_failing_again_is_said_so(app_factory, hooks):
    app = app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow)
    invoices, _, _ = failing_history(app, hooks)
    client = app.test_client()
    url = ADMIN + "/events/process-failed?status=failed&type=invoice.paid"
    done = client.post(url, data={"csrf_token": token(client.get(url))}, follow_redirects=True)
    assert "Processed 3 failed event(s) again: 3 failed." in text(done)
    assert 'class="flash error"' in done.text


def test_none_to_process(app_factory, hooks):
    app = app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow)
    failing_history(app, hooks)
    page = app.test_client().get(ADMIN + "/events/process-failed?type=invoice.finalized")
    assert "No failed or dead event matches type invoice.finalized." in text(page)
    assert "csrf_token" not in page.text


def test_in_queue_mode_they_go_through_the_queue(app_factory, hooks):
    app = app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow)
    invoices, customer, _ = failing_history(app, hooks)
    queued = app_factory(
        STRIPE_HOOKS_ADMIN_AUTH=allow, STRIPE_HOOKS_EVENT_CALLBACK=f"{__name__}.enqueue"
    )
    QUEUED.clear()
    client = queued.test_client()
    url = ADMIN + "/events/process-failed"
    confirm = client.get(url)
    assert "They are handed to the queue" in text(confirm)
    done = client.post(url, data={"csrf_token": token(confirm)}, follow_redirects=True)
    assert "Queued 4 failed event(s) again: 4 queued." in text(done)
    assert sorted(QUEUED) == sorted([*invoices, customer])
    after = statuses(queued)
    assert {after[i] for i in QUEUED} == {"pending"}  # the workers run them


def test_a_long_list_goes_two_hundred_at_a_time(app_factory, hooks, monkeypatch):
    from flask_stripe_hooks.admin import bulk

    app = app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow)
    invoices, customer, broken = failing_history(app, hooks)
    monkeypatch.setattr(bulk, "BULK", 3)  # 4 failed events, 3 a click
    broken["now"] = False
    client = app.test_client()
    url = ADMIN + "/events/process-failed"
    confirm = client.get(url)
    assert "4 failed or dead events are stored. This runs the oldest 3;" in text(confirm)
    done = client.post(url, data={"csrf_token": token(confirm)}, follow_redirects=True)
    assert "Processed 3 failed event(s) again: 3 processed; more remain: press it again." in (
        text(done)
    )
    assert list(statuses(app).values()).count("failed") == 1
    again = client.post(url, data={"csrf_token": token(client.get(url))}, follow_redirects=True)
    assert "Processed 1 failed event(s) again: 1 processed." in text(again)
    assert set(statuses(app).values()) == {"processed"}
