"""each event's object id (indexed), and the handlers each attempt ran

Revision ID: a6c3e9f1d845
Revises: f3c9a1d2e7b4
Create Date: 2026-11-29 09:00:00.000000

Events stored before this migration have no object id: fill it with
'flask stripe-hooks fill-object-ids' (in batches, while the app runs). On a large live
PostgreSQL table, build the index CONCURRENTLY instead: see docs/scale.md.
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'a6c3e9f1d845'
down_revision = 'f3c9a1d2e7b4'
branch_labels = None
depends_on = None

EVENT, DELIVERY = 'stripe_hooks_event', 'stripe_hooks_delivery'


def upgrade():
    with op.batch_alter_table(EVENT) as batch_op:
        batch_op.add_column(sa.Column('object_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('handlers', sa.JSON(), nullable=True))
    with op.batch_alter_table(DELIVERY) as batch_op:
        batch_op.add_column(sa.Column('handlers', sa.JSON(), nullable=True))
    op.create_index(
        'ix_stripe_hooks_event_object_received', EVENT, ['object_id', 'received_at', 'id']
    )


def downgrade():
    op.drop_index('ix_stripe_hooks_event_object_received', table_name=EVENT)
    with op.batch_alter_table(DELIVERY) as batch_op:
        batch_op.drop_column('handlers')
    with op.batch_alter_table(EVENT) as batch_op:
        batch_op.drop_column('handlers')
        batch_op.drop_column('object_id')
