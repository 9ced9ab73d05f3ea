"""The trace a timer's run continues (the traceparent of what scheduled it or made it due) and the trace a send
intent's reconciliation continues (of the step that opened it): telemetry.

0001 creates the tables from the current ``store`` definitions, so the column may exist already.

Revision ID: 0005_traceparents
"""

from alembic import op

from services.outreach.store import SCHEMA

revision = "0005_traceparents"
down_revision = "0004_audiences_replies_stops"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(f'ALTER TABLE "{SCHEMA}".timers ADD COLUMN IF NOT EXISTS traceparent TEXT')
    op.execute(f'ALTER TABLE "{SCHEMA}".sends ADD COLUMN IF NOT EXISTS traceparent TEXT')


def downgrade() -> None:
    op.execute(f'ALTER TABLE "{SCHEMA}".sends DROP COLUMN IF EXISTS traceparent')
    op.execute(f'ALTER TABLE "{SCHEMA}".timers DROP COLUMN IF EXISTS traceparent')
