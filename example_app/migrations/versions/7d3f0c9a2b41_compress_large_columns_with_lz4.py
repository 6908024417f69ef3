"""compress the delivery body and the event data with lz4 (PostgreSQL 14+)

Revision ID: 7d3f0c9a2b41
Revises: 1542cd5bdc2a
Create Date: 2026-11-27 07:40:00.000000

"""
from alembic import op

from flask_stripe_hooks.models import LZ4_COLUMNS, compress_with_lz4

# revision identifiers, used by Alembic.
revision = '7d3f0c9a2b41'
down_revision = '1542cd5bdc2a'
branch_labels = None
depends_on = None


def upgrade():
    compress_with_lz4(op.get_bind())  # does nothing on SQLite or without lz4


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.dialect.server_version_info >= (14,):
        for table, column in LZ4_COLUMNS.items():
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION DEFAULT")
