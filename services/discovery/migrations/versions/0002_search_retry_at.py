"""When a search whose page failed may be tried again (the worker goes on with other searches meanwhile).

0001 creates the tables from the current ``store`` definitions, so the column may exist already.

Revision ID: 0002_search_retry_at
"""

from alembic import op

from services.discovery.store import SCHEMA

revision = "0002_search_retry_at"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(f'ALTER TABLE "{SCHEMA}".searches ADD COLUMN IF NOT EXISTS retry_at TIMESTAMPTZ')


def downgrade() -> None:
    op.execute(f'ALTER TABLE "{SCHEMA}".searches DROP COLUMN IF EXISTS retry_at')
