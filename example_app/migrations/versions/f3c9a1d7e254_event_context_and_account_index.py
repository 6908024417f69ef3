"""an event's context, and the index of the events list filtered by account

Revision ID: f3c9a1d7e254
Revises: d7a2f4c81e60
Create Date: 2026-12-01 10:00:00.000000

The context column has a constant server default, so PostgreSQL adds it without rewriting
the table. On a large live PostgreSQL table, build the index CONCURRENTLY instead: see
docs/scale.md.
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'f3c9a1d7e254'
down_revision = 'd7a2f4c81e60'
branch_labels = None
depends_on = None

EVENT = 'stripe_hooks_event'


def upgrade():
    with op.batch_alter_table(EVENT) as batch_op:
        batch_op.add_column(
            sa.Column('context', sa.String(length=255), server_default='', nullable=False)
        )
    op.create_index(
        'ix_stripe_hooks_event_account_received', EVENT, ['account', 'received_at', 'id']
    )


def downgrade():
    op.drop_index('ix_stripe_hooks_event_account_received', table_name=EVENT)
    with op.batch_alter_table(EVENT) as batch_op:
        batch_op.drop_column('context')
