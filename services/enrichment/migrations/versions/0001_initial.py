"""Runtime tables and the profile cache.

Revision ID: 0001
"""

from alembic import op

from services.enrichment.store import SCHEMA, profile_cache
from services.runtime.migrations import create_runtime_tables, drop_runtime_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_runtime_tables(SCHEMA)
    profile_cache.create(op.get_bind())


def downgrade() -> None:
    profile_cache.drop(op.get_bind())
    drop_runtime_tables(SCHEMA)
