"""Versioned sequences: a campaign's workflow can be edited while it runs; each lead records its version.

0001 creates the tables from the current ``store`` definitions, so a database created after this change
already has the table and the columns: every statement is ``IF NOT EXISTS``. Existing campaigns and leads are
on version 1, whose graph is the campaign's stored workflow.

Revision ID: 0006_workflow_versions
"""

from alembic import op

from services.outreach.store import SCHEMA

revision = "0006_workflow_versions"
down_revision = "0005_traceparents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(f'ALTER TABLE "{SCHEMA}".campaigns ADD COLUMN IF NOT EXISTS workflow_version INTEGER NOT NULL DEFAULT 1')
    op.execute(
        f'ALTER TABLE "{SCHEMA}".enrollments ADD COLUMN IF NOT EXISTS workflow_version INTEGER NOT NULL DEFAULT 1'
    )
    op.execute(
        f"""
        CREATE TABLE IF NOT EXISTS "{SCHEMA}".workflow_versions (
            campaign_id UUID NOT NULL,
            version INTEGER NOT NULL,
            workflow JSONB NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (campaign_id, version)
        )
        """
    )
    op.execute(
        f"""
        INSERT INTO "{SCHEMA}".workflow_versions (campaign_id, version, workflow, created_at)
        SELECT campaign_id, workflow_version, workflow, created_at FROM "{SCHEMA}".campaigns
        ON CONFLICT DO NOTHING
        """
    )


def downgrade() -> None:
    op.execute(f'DROP TABLE IF EXISTS "{SCHEMA}".workflow_versions')
    op.execute(f'ALTER TABLE "{SCHEMA}".enrollments DROP COLUMN IF EXISTS workflow_version')
    op.execute(f'ALTER TABLE "{SCHEMA}".campaigns DROP COLUMN IF EXISTS workflow_version')
