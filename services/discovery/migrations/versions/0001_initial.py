"""Runtime tables, searches, source groups, leads and group members.

Revision ID: 0001
"""

from alembic import op

from services.discovery.store import SCHEMA, leads, searches, source_group_members, source_groups
from services.runtime.migrations import create_runtime_tables, drop_runtime_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = (source_groups, searches, leads, source_group_members)


def upgrade() -> None:
    create_runtime_tables(SCHEMA)
    for table in TABLES:
        table.create(op.get_bind())


def downgrade() -> None:
    for table in reversed(TABLES):
        table.drop(op.get_bind())
    drop_runtime_tables(SCHEMA)
