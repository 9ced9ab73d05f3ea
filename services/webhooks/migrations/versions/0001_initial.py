"""Runtime tables and webhooks' subscriptions, deliveries and attempts.

Revision ID: 0001
"""

from alembic import op

from services.runtime.migrations import create_runtime_tables, drop_runtime_tables
from services.webhooks.store import SCHEMA, SERVICE_TABLES

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_runtime_tables(SCHEMA)
    for table in SERVICE_TABLES:
        table.create(op.get_bind())


def downgrade() -> None:
    for table in reversed(SERVICE_TABLES):
        table.drop(op.get_bind())
    drop_runtime_tables(SCHEMA)
