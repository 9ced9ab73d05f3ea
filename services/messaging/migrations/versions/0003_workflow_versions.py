"""Versioned sequences and A/B variants: the workflow version messaging knows of a campaign, the one each lead
runs, and the lead's variant of each step that has variants.

0001 creates the tables from the current ``store`` definitions, so a database created after this change
already has the columns: every statement is ``IF NOT EXISTS``. Existing campaigns and leads are on version 1,
without variants.

Revision ID: 0003_workflow_versions
"""

from alembic import op

from services.messaging.store import SCHEMA

revision = "0003_workflow_versions"
down_revision = "0002_matched_posts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("campaigns", "enrollments"):
        op.execute(
            f'ALTER TABLE "{SCHEMA}".{table} ADD COLUMN IF NOT EXISTS workflow_version INTEGER NOT NULL DEFAULT 1'
        )
    op.execute(
        f"""ALTER TABLE "{SCHEMA}".enrollments ADD COLUMN IF NOT EXISTS variants JSONB NOT NULL DEFAULT '{{}}'"""
    )


def downgrade() -> None:
    op.execute(f'ALTER TABLE "{SCHEMA}".enrollments DROP COLUMN IF EXISTS variants')
    for table in ("campaigns", "enrollments"):
        op.execute(f'ALTER TABLE "{SCHEMA}".{table} DROP COLUMN IF EXISTS workflow_version')
