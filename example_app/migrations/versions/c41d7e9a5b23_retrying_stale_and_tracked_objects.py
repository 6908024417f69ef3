"""retrying and stale events; the newest event per Stripe object; paused endpoints

Revision ID: c41d7e9a5b23
Revises: b5e81c2d9f07
Create Date: 2026-11-28 18:20:00.000000

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'c41d7e9a5b23'
down_revision = 'b5e81c2d9f07'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'stripe_hooks_object',
        sa.Column('id', sa.String(length=255), nullable=False),
        sa.Column('event_id', sa.String(length=255), nullable=False),
        sa.Column('created', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('stripe_hooks_event') as batch_op:
        batch_op.add_column(
            sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column('stale', sa.JSON(), nullable=True))
    with op.batch_alter_table('stripe_hooks_endpoint') as batch_op:
        batch_op.add_column(
            sa.Column('paused', sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade():
    with op.batch_alter_table('stripe_hooks_endpoint') as batch_op:
        batch_op.drop_column('paused')
    with op.batch_alter_table('stripe_hooks_event') as batch_op:
        batch_op.drop_column('stale')
        batch_op.drop_column('next_attempt_at')
    op.drop_table('stripe_hooks_object')
