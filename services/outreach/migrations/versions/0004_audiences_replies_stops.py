"""Audiences, replies from every channel, smarter stops.

- ``leads.post_matched`` (the post to like or comment on came from a posts watch), ``leads.location`` (per-lead
  active hours);
- ``enrollments.paused_until`` (an out-of-office answer pauses the lead until its return date);
- ``inbox_cursors`` and ``inbox_messages`` (IMAP and LinkedIn inbox polling), an index of email Message-IDs, and the
  simulated provider's LinkedIn inbox (``sim_linkedin_inbox``).

Expand-only: older code ignores all of it. 0001 creates the tables from the current ``store`` definitions, so
a database created after this change already has the columns and the index: every statement is ``IF NOT EXISTS``.

Revision ID: 0004_audiences_replies_stops
"""

from alembic import op

from services.outreach.store import SCHEMA, inbox_cursors, inbox_messages, sim_linkedin_inbox

revision = "0004_audiences_replies_stops"
down_revision = "0003_send_intents"
branch_labels = None
depends_on = None

COLUMNS = {
    "leads": {"post_matched": "BOOLEAN NOT NULL DEFAULT false", "location": "TEXT"},
    "enrollments": {"paused_until": "TIMESTAMPTZ"},
}


def upgrade() -> None:
    for name_of_table, columns in COLUMNS.items():
        for name, kind in columns.items():
            op.execute(f'ALTER TABLE "{SCHEMA}".{name_of_table} ADD COLUMN IF NOT EXISTS {name} {kind}')
    op.execute(
        f"CREATE INDEX IF NOT EXISTS ix_sends_message_id ON \"{SCHEMA}\".sends (provider_ref) WHERE action = 'email'"
    )
    for table in (inbox_cursors, inbox_messages, sim_linkedin_inbox):
        table.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    for table in (sim_linkedin_inbox, inbox_messages, inbox_cursors):
        table.drop(op.get_bind(), checkfirst=True)
    op.execute(f'DROP INDEX IF EXISTS "{SCHEMA}".ix_sends_message_id')
    for name_of_table, columns in COLUMNS.items():
        for name in columns:
            op.execute(f'ALTER TABLE "{SCHEMA}".{name_of_table} DROP COLUMN IF EXISTS {name}')
