"""The profile cache remembers the lead each entry was fetched for, so that an erased lead's entry can be found
and deleted (``LeadErased``): its key is the person's canonical LinkedIn URL or email, which nothing can read
once their data key is destroyed.

Entries cached before this revision have no lead (NULL): they are found only by a key that is the lead id
(``lead:<id>``), so an erasure does not reach them (docs/security.md, what erasure does not reach). Older code
writes entries without a lead, which this schema accepts.

Revision ID: 0004_profile_cache_lead
"""

from alembic import op

from services.enrichment.store import SCHEMA

revision = "0004_profile_cache_lead"
down_revision = "0003_cache_per_workspace"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0001 creates the table from the current definition on a new database: the column may be there already.
    op.execute(f'ALTER TABLE "{SCHEMA}".profile_cache ADD COLUMN IF NOT EXISTS lead_id UUID')
    op.execute(f'CREATE INDEX IF NOT EXISTS ix_profile_cache_lead ON "{SCHEMA}".profile_cache (workspace_id, lead_id)')


def downgrade() -> None:
    op.execute(f'DROP INDEX IF EXISTS "{SCHEMA}".ix_profile_cache_lead')
    op.execute(f'ALTER TABLE "{SCHEMA}".profile_cache DROP COLUMN IF EXISTS lead_id')
