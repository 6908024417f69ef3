"""indexes that serve each admin list's filter with its order

Revision ID: e8b2d6f4a1c3
Revises: c41d7e9a5b23
Create Date: 2026-11-28 18:30:00.000000

The single-column indexes on received_at, status, outcome and endpoint_id give way to
indexes on (filter, received_at, id), which serve the filter and the newest-first order
together. On a large live PostgreSQL table, build them CONCURRENTLY instead: see
docs/scale.md.
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'e8b2d6f4a1c3'
down_revision = 'c41d7e9a5b23'
branch_labels = None
depends_on = None

EVENT, DELIVERY = 'stripe_hooks_event', 'stripe_hooks_delivery'


def upgrade():
    op.create_index('ix_stripe_hooks_event_received', EVENT, ['received_at', 'id'])
    op.create_index(
        'ix_stripe_hooks_event_status_received', EVENT, ['status', 'received_at', 'id']
    )
    op.create_index(
        'ix_stripe_hooks_event_type_received',
        EVENT,
        ['type', 'received_at'],
        postgresql_ops={'type': 'COLLATE "C"'},
    )
    op.create_index('ix_stripe_hooks_delivery_received', DELIVERY, ['received_at', 'id'])
    op.create_index(
        'ix_stripe_hooks_delivery_endpoint_received',
        DELIVERY,
        ['endpoint_id', 'received_at', 'id'],
    )
    op.create_index(
        'ix_stripe_hooks_delivery_outcome_received', DELIVERY, ['outcome', 'received_at', 'id']
    )
    op.drop_index('ix_stripe_hooks_event_received_at', table_name=EVENT)
    op.drop_index('ix_stripe_hooks_event_status', table_name=EVENT)
    op.drop_index('ix_stripe_hooks_delivery_received_at', table_name=DELIVERY)
    op.drop_index('ix_stripe_hooks_delivery_outcome', table_name=DELIVERY)
    op.drop_index('ix_stripe_hooks_delivery_endpoint_id', table_name=DELIVERY)


def downgrade():
    op.create_index('ix_stripe_hooks_delivery_endpoint_id', DELIVERY, ['endpoint_id'])
    op.create_index('ix_stripe_hooks_delivery_outcome', DELIVERY, ['outcome'])
    op.create_index('ix_stripe_hooks_delivery_received_at', DELIVERY, ['received_at'])
    op.create_index('ix_stripe_hooks_event_status', EVENT, ['status'])
    op.create_index('ix_stripe_hooks_event_received_at', EVENT, ['received_at'])
    op.drop_index('ix_stripe_hooks_delivery_outcome_received', table_name=DELIVERY)
    op.drop_index('ix_stripe_hooks_delivery_endpoint_received', table_name=DELIVERY)
    op.drop_index('ix_stripe_hooks_delivery_received', table_name=DELIVERY)
    op.drop_index('ix_stripe_hooks_event_type_received', table_name=EVENT)
    op.drop_index('ix_stripe_hooks_event_status_received', table_name=EVENT)
    op.drop_index('ix_stripe_hooks_event_received', table_name=EVENT)
