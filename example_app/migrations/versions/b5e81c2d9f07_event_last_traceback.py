"""the traceback of an event's last failed run

Revision ID: b5e81c2d9f07
Revises: 7d3f0c9a2b41
Create Date: 2026-11-28 18:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'b5e81c2d9f07'
down_revision = '7d3f0c9a2b41'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('stripe_hooks_event') as batch_op:
        batch_op.add_column(sa.Column('last_traceback', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('stripe_hooks_event') as batch_op:
        batch_op.drop_column('last_traceback')
