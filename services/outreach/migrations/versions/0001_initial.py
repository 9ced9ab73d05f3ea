"""Runtime tables, campaigns, accounts, enrollments, durable timers, compliance lists.

Revision ID: 0001
"""

from alembic import op

from services.outreach.store import SCHEMA, SERVICE_TABLES
from services.runtime.migrations import create_runtime_tables, drop_runtime_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_runtime_tables(SCHEMA)
    bind = op.get_bind()
    for table in SERVICE_TABLES:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(SERVICE_TABLES):
        table.drop(bind)
    drop_runtime_tables(SCHEMA)
