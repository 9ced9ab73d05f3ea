"""Cancelled deliveries: when a subscription's ``event_types`` stop selecting a queued delivery's type, the
delivery is ``cancelled`` (a status, not a new column) at ``cancelled_at``, with the ``cancel_reason`` the API shows.

Older code runs on this schema (the columns are nullable and it never writes them), but its API does not know the
``cancelled`` status: after a rollback, a delivery log page that holds a cancelled delivery answers 500 until
those deliveries are redelivered or pruned by the retention. Its worker claims only pending deliveries.

Revision ID: 0002_cancelled_deliveries
"""

from alembic import op

from services.webhooks.store import SCHEMA

revision = "0002_cancelled_deliveries"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0001 creates the table from the current definition on a new database: the columns may be there already.
    op.execute(f'ALTER TABLE "{SCHEMA}".deliveries ADD COLUMN IF NOT EXISTS cancelled_at TIMESTAMP WITH TIME ZONE')
    op.execute(f'ALTER TABLE "{SCHEMA}".deliveries ADD COLUMN IF NOT EXISTS cancel_reason TEXT')


def downgrade() -> None:
    op.execute(f'ALTER TABLE "{SCHEMA}".deliveries DROP COLUMN IF EXISTS cancel_reason')
    op.execute(f'ALTER TABLE "{SCHEMA}".deliveries DROP COLUMN IF EXISTS cancelled_at')
