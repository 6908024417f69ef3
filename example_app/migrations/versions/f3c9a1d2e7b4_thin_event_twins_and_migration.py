"""thin events: the twin of an event, and the move of an endpoint to thin events

Revision ID: f3c9a1d2e7b4
Revises: f3c9a1d7e254
Create Date: 2026-12-02 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'f3c9a1d2e7b4'
down_revision = 'f3c9a1d7e254'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('stripe_hooks_event') as batch_op:
        batch_op.add_column(sa.Column('twin_id', sa.String(length=255), nullable=True))
    with op.batch_alter_table('stripe_hooks_endpoint') as batch_op:
        batch_op.add_column(sa.Column('migration', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('stripe_hooks_endpoint') as batch_op:
        batch_op.drop_column('migration')
    with op.batch_alter_table('stripe_hooks_event') as batch_op:
        batch_op.drop_column('twin_id')
