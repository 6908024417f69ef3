"""when a retrying event is due

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
    with op.batch_alter_table('stripe_hooks_event') as batch_op:
        batch_op.add_column(
            sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True)
        )


def downgrade():
    with op.batch_alter_table('stripe_hooks_event') as batch_op:
        batch_op.drop_column('next_attempt_at')
