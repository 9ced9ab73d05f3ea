"""The trace a search's pages continue: the traceparent of the request that saved it.

0001 creates the tables from the current ``store`` definitions, so the column may exist already.

Revision ID: 0004_search_traceparent
"""

from alembic import op

from services.discovery.store import SCHEMA

revision = "0004_search_traceparent"
down_revision = "0003_targets_enrichment_watch"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(f'ALTER TABLE "{SCHEMA}".searches ADD COLUMN IF NOT EXISTS traceparent TEXT')


def downgrade() -> None:
    op.execute(f'ALTER TABLE "{SCHEMA}".searches DROP COLUMN IF EXISTS traceparent')
