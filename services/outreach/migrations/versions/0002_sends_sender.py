"""The sending mailbox of each email send, so the daily email cap counts per mailbox.

0001 creates the tables from the current ``store`` definitions, so a database created after this
change already has the column and index: both statements are ``IF NOT EXISTS``. Older email sends
get their campaign's sender address.

Revision ID: 0002
"""

from alembic import op

from services.outreach.store import SCHEMA

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(f'ALTER TABLE "{SCHEMA}".sends ADD COLUMN IF NOT EXISTS sender TEXT')
    op.execute(
        f'CREATE INDEX IF NOT EXISTS ix_sends_sender ON "{SCHEMA}".sends (workspace_id, sender, action, sent_at)'
    )
    op.execute(
        f"""
        UPDATE "{SCHEMA}".sends AS s
           SET sender = lower(trim(c.delivery #>> '{{email_fallback,sender_email}}'))
          FROM "{SCHEMA}".campaigns AS c
         WHERE s.campaign_id = c.campaign_id AND s.action = 'email' AND s.sender IS NULL
        """
    )


def downgrade() -> None:
    op.execute(f'DROP INDEX IF EXISTS "{SCHEMA}".ix_sends_sender')
    op.execute(f'ALTER TABLE "{SCHEMA}".sends DROP COLUMN IF EXISTS sender')
