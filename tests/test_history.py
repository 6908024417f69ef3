"""A long history: keyset pages in the admin, capped counts, prune in batches, and the
indexes the lists need (EXPLAIN on PostgreSQL). Rows are made with SQL (history_support)."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask_stripe_hooks import retention
from flask_stripe_hooks.event_types import type_condition
from flask_stripe_hooks.extension import get_state
from flask_stripe_hooks.models import delivery_table, event_table
from flask_stripe_hooks.testing import create_endpoint
from flask_stripe_hooks.utils import utcnow

from support.admin_support import ADMIN, allow
from support.helpers import on_postgresql
from support.history_support import fill

ROW = re.compile(r">(evt_[a-z]+\d+)<")
OLDER = re.compile(r'href="([^"]+)" rel="next">Older')
NEWER = re.compile(r'href="([^"]+)" rel="prev">← Newer')


@pytest.fixture
def app(app_factory: Any) -> Any:
    return app_factory(STRIPE_HOOKS_ADMIN_AUTH=allow)


@pytest.fixture
def endpoint_id(app: Any) -> int:
    with app.app_context():
        return int(create_endpoint(app.extensions["sqlalchemy"]).id)


def add(app: Any, count: int, **options: Any) -> None:
    options.setdefault("newest", utcnow() - timedelta(minutes=1))
    with app.app_context(), app.extensions["sqlalchemy"].engine.begin() as conn:
        fill(conn, count, **options)


def follow(client: Any, pattern: re.Pattern[str], page: Any) -> Any:
    found = pattern.search(page.text)
    return client.get(html.unescape(found.group(1))) if found else None


def walk(client: Any, url: str) -> list[list[str]]:
    """Every page's event ids, newest page first, following the "Older" links."""
    pages = []
    page = client.get(url)
    while page is not None:
        assert page.status_code == 200
        pages.append(ROW.findall(page.text))
        page = follow(client, OLDER, page)
    return pages


def test_pages_of_equal_times_break_ties_by_id_and_ignore_new_rows(app, endpoint_id):
    # 120 events received in the same microsecond: only the id orders them.
    add(app, 120, endpoint_id=endpoint_id, step=0, prefix="evt_same")
    add(app, 30, endpoint_id=endpoint_id, first=1, step=1, prefix="evt_old")
    client = app.test_client()
    pages = walk(client, ADMIN + "/events/")
    assert [len(p) for p in pages] == [50, 50, 50]
    listed = [i for p in pages for i in p]
    assert len(set(listed)) == 150
    same = [i for i in listed if i.startswith("evt_same")]
    assert same == sorted(same, reverse=True) and listed[:120] == same

    first = client.get(ADMIN + "/events/")
    add(app, 5, endpoint_id=endpoint_id, step=0, prefix="evt_new", newest=utcnow())
    second = follow(client, OLDER, first)
    assert ROW.findall(second.text) == pages[1]  # the new rows shift nothing
    assert ROW.findall(follow(client, OLDER, second).text) == pages[2]
    back = follow(client, NEWER, second)
    assert ROW.findall(back.text) == pages[0]  # the rows just newer, as first seen
    newest = follow(client, NEWER, back)  # and above them, the new rows
    assert ROW.findall(newest.text) == ROW.findall(client.get(ADMIN + "/events/").text)
    assert ROW.findall(newest.text)[:5] == [f"evt_new{i}" for i in (5, 4, 3, 2, 1)]


def test_newer_links_return_the_same_pages(app, endpoint_id):
    add(app, 180, endpoint_id=endpoint_id, step=2)
    client = app.test_client()
    pages = walk(client, ADMIN + "/events/")
    assert [len(p) for p in pages] == [50, 50, 50, 30]
    page = client.get(ADMIN + "/events/")
    for _ in range(3):
        page = follow(client, OLDER, page)
    for expected in reversed(pages[:3]):
        page = follow(client, NEWER, page)
        assert ROW.findall(page.text) == expected
    assert NEWER.search(page.text) is None  # the newest page has no newer link


def test_filters_combine_with_paging(app, endpoint_id):
    # g % 5 in (0, 2): invoice.*; g % 50 == 0: failed; g % 10 == 0: live. invoice, failed
    # and live together: g % 50 == 0 → 3000 / 50 = 60 events.
    add(app, 3000, endpoint_id=endpoint_id, step=1)
    client = app.test_client()
    pages = walk(client, ADMIN + "/events/?type=invoice&status=failed&mode=live")
    listed = [i for p in pages for i in p]
    assert listed == [f"evt_h{g}" for g in range(50, 3001, 50)]
    assert [len(p) for p in pages] == [50, 10]
    first = client.get(ADMIN + "/events/?type=invoice&status=failed&mode=live")
    assert "60 in all" in first.text
    older = OLDER.search(first.text)
    assert older and all(
        f in older.group(1) for f in ("type=invoice", "status=failed", "mode=live")
    )
    # A type prefix by whole segments: "invoice" is not "invoiceitem".
    add(app, 3, endpoint_id=endpoint_id, prefix="evt_item", types=("invoiceitem.created",))
    assert not [i for p in walk(client, ADMIN + "/events/?type=invoice") for i in p if "item" in i]


def test_counts_stop_at_a_thousand(app, endpoint_id):
    add(app, 1000, endpoint_id=endpoint_id, failed_every=1)
    client = app.test_client()
    page = client.get(ADMIN + "/events/")
    assert "1,000 in all" in page.text and "1,000+" not in page.text
    add(app, 1, endpoint_id=endpoint_id, first=1001, failed_every=1)
    page = client.get(ADMIN + "/events/")
    assert "1,000+ in all" in page.text
    counts = re.search(r'id="event-counts">(.*?)</p>', page.text, re.S)
    assert counts and "Failed: <strong>1,000+</strong>" in counts.group(1)
    # The day's counts stop at the cap too: their cost does not grow with the traffic.
    assert "Last 24 h: <strong>1,000+</strong>\n  received, 1,000+ failed" in counts.group(1)
    deliveries = client.get(ADMIN + "/deliveries/?outcome=failed")
    assert "1,000+ in all" in deliveries.text
    endpoints = client.get(ADMIN + "/")
    assert ">1,000+</a>" in endpoints.text  # failed deliveries in the last 24 h
    # The health checks read at most the cap's worth too.
    health = html.unescape(client.get(ADMIN + "/health").text)
    assert "1,000+ event(s) failed in their handlers." in health
    assert "1,000 of the last 1,000 deliveries failed in the last 24 hours (100%)" in health


def test_deliveries_page_by_time_and_filter(app, endpoint_id):
    add(app, 130, endpoint_id=endpoint_id, step=0)
    client = app.test_client()
    url = ADMIN + "/deliveries/?outcome=processed"
    ids = []
    page = client.get(url)
    while page is not None:
        ids += re.findall(r'data-label="Event"><a href="[^"]+">(evt_h\d+)<', page.text)
        page = follow(client, OLDER, page)
    expected = [f"evt_h{g}" for g in range(1, 131) if g % 50]
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))


def test_a_bad_page_link_is_a_short_400(app, endpoint_id):
    client = app.test_client()
    for bad in ("before=nonsense", "after=2026-13-01T00:00:00_evt_1", "before=_"):
        response = client.get(f"{ADMIN}/events/?{bad}")
        assert response.status_code == 400
        assert "This page link is not valid" in response.text
    assert client.get(f"{ADMIN}/deliveries/?before=2026-01-01T00:00:00+00:00_x").status_code == 400


# -- prune --------------------------------------------------------------------------------


def test_prune_goes_in_batches_keeps_pending_and_clears_bodies_sooner(app, endpoint_id):
    now = utcnow()
    add(app, 40, endpoint_id=endpoint_id, newest=now - timedelta(days=31), failed_every=1000)
    add(app, 10, endpoint_id=endpoint_id, newest=now - timedelta(days=10), prefix="evt_mid")
    add(app, 5, endpoint_id=endpoint_id, newest=now - timedelta(hours=1), prefix="evt_new")
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        db.session.execute(
            event_table.update()
            .where(event_table.c.id.in_(["evt_h3", "evt_h7"]))
            .values(status="pending")
        )
        db.session.commit()
        state = get_state()
        options = retention.prune_options(timedelta(days=30), timedelta(days=7))
        dry = retention.prune(state, **options, dry_run=True)
        assert dry == {"deliveries": 38, "events": 38, "bodies": 12}  # what the real run does
        batches: list[int] = []
        done = retention.prune(state, **options, batch=3, progress=batches.append)
        assert done == {"deliveries": 38, "events": 38, "bodies": 12}
        assert batches == [3] * 12 + [2] + [3] * 12 + [2] + [3] * 4
        events = set(db.session.execute(sa.select(event_table.c.id)).scalars())
        assert events == {"evt_h3", "evt_h7"} | {f"evt_mid{g}" for g in range(1, 11)} | {
            f"evt_new{g}" for g in range(1, 6)
        }
        bodies = dict(
            db.session.execute(sa.select(delivery_table.c.event_id, delivery_table.c.body)).all()
        )
        assert {k for k, v in bodies.items() if v == b""} == {"evt_h3", "evt_h7"} | {
            f"evt_mid{g}" for g in range(1, 11)
        }
        assert all(bodies[f"evt_new{g}"] == b"{}" for g in range(1, 6))


def test_prune_cli_clears_bodies_and_refuses_bad_ages(app, endpoint_id):
    add(app, 4, endpoint_id=endpoint_id, newest=utcnow() - timedelta(days=8))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["stripe-hooks", "prune", "--bodies-older-than", "7d"])
    assert result.exit_code == 0, result.output
    assert "deleted 0 delivery(ies) and 0 event(s) received more than 30d ago" in result.stdout
    assert "cleared the body of 4 delivery(ies) received more than 7d ago" in result.stdout
    again = runner.invoke(args=["stripe-hooks", "prune", "--bodies-older-than", "7d", "--dry-run"])
    assert "would clear the body of 0 delivery(ies)" in again.stdout
    bad = runner.invoke(args=["stripe-hooks", "prune", "--bodies-older-than", "40d"])
    assert bad.exit_code == 1 and "--bodies-older-than is longer than --older-than" in bad.output


# -- indexes ------------------------------------------------------------------------------


@on_postgresql
def test_the_type_filter_reads_the_bytewise_type_index(app, endpoint_id):
    add(app, 20000, endpoint_id=endpoint_id, types=("charge.succeeded", "customer.created"))
    add(app, 40, endpoint_id=endpoint_id, prefix="evt_rare", types=("payout.paid",))
    db = app.extensions["sqlalchemy"]
    query = (
        sa.select(event_table)
        .where(type_condition(event_table.c.type, "payout"))
        .order_by(event_table.c.received_at.desc(), event_table.c.id.desc())
        .limit(51)
    )
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(sa.text("ANALYZE stripe_hooks_event"))
        indexdef = conn.execute(
            sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
            {"n": "ix_stripe_hooks_event_type_received"},
        ).scalar_one()
        assert 'type COLLATE "C"' in indexdef
        sql = query.compile(conn, compile_kwargs={"literal_binds": True})
        plan = "\n".join(conn.execute(sa.text(f"EXPLAIN {sql}")).scalars())
    assert "ix_stripe_hooks_event_type_received" in plan, plan
    assert "Seq Scan" not in plan, plan


def test_an_objects_history_pages_newest_first(app, endpoint_id):
    """``?object=`` in the admin and ``events --object`` in the CLI: the events about one
    object, newest first, in keyset pages (g % 100 == 7: 130 of 13,000)."""
    add(app, 13000, endpoint_id=endpoint_id, step=1)
    client = app.test_client()
    pages = walk(client, ADMIN + "/events/?object=sub_7")
    assert [i for p in pages for i in p] == [f"evt_h{g}" for g in range(7, 13001, 100)]
    assert [len(p) for p in pages] == [50, 50, 30]
    first = client.get(ADMIN + "/events/?object=sub_7&status=failed")  # g % 50 == 0 too: none
    assert "No events match these filters." in first.text

    runner = app.test_cli_runner()
    args = ["stripe-hooks", "events", "--object", "sub_7", "--limit", "100"]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    listed = re.findall(r"^(evt_h\d+) ", result.output, re.M)
    assert listed == [f"evt_h{g}" for g in range(7, 10001, 100)]
    (cursor,) = re.findall(r"--before (\S+)$", result.output, re.M)
    rest = runner.invoke(args=[*args, "--before", cursor])
    assert re.findall(r"^(evt_h\d+) ", rest.output, re.M) == [
        f"evt_h{g}" for g in range(10007, 13001, 100)
    ]
    assert "--before" not in rest.output
    bad = runner.invoke(args=[*args, "--before", "nonsense"])
    assert bad.exit_code == 1 and "This page link is not valid" in bad.output


@on_postgresql
def test_the_object_filter_reads_the_object_index(app, endpoint_id):
    add(app, 20000, endpoint_id=endpoint_id, objects=20)  # 1,000 events each
    db = app.extensions["sqlalchemy"]
    query = (
        sa.select(event_table)
        .where(event_table.c.object_id == "sub_7")
        .order_by(event_table.c.received_at.desc(), event_table.c.id.desc())
        .limit(51)
    )
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(sa.text("ANALYZE stripe_hooks_event"))
        sql = query.compile(conn, compile_kwargs={"literal_binds": True})
        plan = "\n".join(conn.execute(sa.text(f"EXPLAIN {sql}")).scalars())
    assert "ix_stripe_hooks_event_object_received" in plan, plan
    assert "Seq Scan" not in plan and "Sort" not in plan, plan
