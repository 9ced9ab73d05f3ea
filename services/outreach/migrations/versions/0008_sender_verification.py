"""Email sender verification with real providers: ``accounts.verification_requested_at``,
``verification_checked_at`` and ``verification_detail`` (what the provider said when it failed).

Expand-only: older code ignores the columns. 0001 creates the tables from the current ``store`` definitions, so
a database created after this change already has them: every statement is ``IF NOT EXISTS``.

Revision ID: 0008_sender_verification
"""

from alembic import op

from services.outreach.store import SCHEMA

revision = "0008_sender_verification"
down_revision = "0007_idempotency_keys"
branch_labels = None
depends_on = None

COLUMNS = {
    "verification_requested_at": "TIMESTAMPTZ",
    "verification_checked_at": "TIMESTAMPTZ",
    "verification_detail": "TEXT",
}


def upgrade() -> None:
    for name, kind in COLUMNS.items():
        op.execute(f'ALTER TABLE "{SCHEMA}".accounts ADD COLUMN IF NOT EXISTS {name} {kind}')


def downgrade() -> None:
    for name in COLUMNS:
        op.execute(f'ALTER TABLE "{SCHEMA}".accounts DROP COLUMN IF EXISTS {name}')
