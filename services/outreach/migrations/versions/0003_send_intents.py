"""Send intents: the ``sends`` row is committed before the provider call, with its state and outcome.

Existing rows are sends whose outcome is known (state ``sent``, the default). 0001 creates the tables
from the current ``store`` definitions, so a database created after this change already has the
columns and the index: every statement is ``IF NOT EXISTS``.

Revision ID: 0003_send_intents
"""

from alembic import op

from services.outreach.store import SCHEMA

revision = "0003_send_intents"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = {
    "state": "TEXT NOT NULL DEFAULT 'sent'",
    "event": "JSONB",
    "reason": "TEXT",
    "detail": "TEXT",
    "reconcile_at": "TIMESTAMPTZ",
    "reconcile_attempts": "INTEGER NOT NULL DEFAULT 0",
}


def upgrade() -> None:
    for name, kind in COLUMNS.items():
        op.execute(f'ALTER TABLE "{SCHEMA}".sends ADD COLUMN IF NOT EXISTS {name} {kind}')
    op.execute(
        f"CREATE INDEX IF NOT EXISTS ix_sends_pending ON \"{SCHEMA}\".sends (reconcile_at) WHERE state = 'pending'"
    )


def downgrade() -> None:
    op.execute(f'DROP INDEX IF EXISTS "{SCHEMA}".ix_sends_pending')
    for name in reversed(COLUMNS):
        op.execute(f'ALTER TABLE "{SCHEMA}".sends DROP COLUMN IF EXISTS {name}')
