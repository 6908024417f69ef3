"""A page listing what the handlers did, so the example shows something in a browser."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, render_template_string

from . import db
from .models import ActivityLog, Customer

bp = Blueprint("example", __name__)

PAGE = """<!doctype html>
<title>flask-stripe-hooks example</title>
<h1>flask-stripe-hooks example</h1>
<p>Send an event: <code>flask --app example_app stripe-hooks send-test-event customer.created
 --url {{ request.host_url }}</code></p>
<h2>Customers</h2>
<ul>{% for c in customers %}<li>{{ c.stripe_id }} {{ c.email or "" }}</li>
{% else %}<li>none yet</li>{% endfor %}</ul>
<h2>Handler activity</h2>
<ul>{% for a in activity %}<li>{{ a.at.strftime("%H:%M:%S") }} {{ a.handler }}: {{ a.message }}
 ({{ a.event_id }})</li>{% else %}<li>nothing yet</li>{% endfor %}</ul>
"""


@bp.get("/")
def index() -> str:
    customers = db.session.execute(sa.select(Customer).order_by(Customer.id.desc()).limit(20))
    activity = db.session.execute(sa.select(ActivityLog).order_by(ActivityLog.id.desc()).limit(50))
    return render_template_string(
        PAGE, customers=customers.scalars().all(), activity=activity.scalars().all()
    )
