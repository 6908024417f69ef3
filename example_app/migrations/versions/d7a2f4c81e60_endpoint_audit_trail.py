"""the audit trail of endpoint changes

Revision ID: d7a2f4c81e60
Revises: e8b2d6f4a1c3
Create Date: 2026-11-28 18:40:00.000000

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'd7a2f4c81e60'
down_revision = 'e8b2d6f4a1c3'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'stripe_hooks_audit',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('endpoint_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('endpoint_uuid', sa.Uuid(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=255), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('action', sa.String(length=32), nullable=False),
        sa.Column('changes', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['endpoint_id'], ['stripe_hooks_endpoint.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('stripe_hooks_audit') as batch_op:
        batch_op.create_index(
            batch_op.f('ix_stripe_hooks_audit_endpoint_uuid'), ['endpoint_uuid'], unique=False
        )


def downgrade():
    op.drop_table('stripe_hooks_audit')
