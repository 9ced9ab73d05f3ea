"""The trace a video job's work continues: the traceparent of the handler that requested it (telemetry).

0001 creates the tables from the current ``store`` definitions, so the column may exist already.

Revision ID: 0002_job_traceparent
"""

from alembic import op

from services.video.store import SCHEMA

revision = "0002_job_traceparent"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(f'ALTER TABLE "{SCHEMA}".jobs ADD COLUMN IF NOT EXISTS traceparent TEXT')


def downgrade() -> None:
    op.execute(f'ALTER TABLE "{SCHEMA}".jobs DROP COLUMN IF EXISTS traceparent')
