"""The profile cache is kept per workspace (a provider's answer bought for one workspace is never reused by
another), and leads of groups that enrich on selection wait in ``awaiting_selection``.

Cached rows without a workspace cannot be attributed to one: they are dropped (each person is fetched again
once, by the workspace that needs them). Older code writes cache rows without a workspace, so it cannot run on
this schema (``oldest_code_revision``).

Revision ID: 0003_cache_per_workspace
"""

from alembic import op

from services.enrichment.store import SCHEMA, awaiting_selection

revision = "0003_cache_per_workspace"
down_revision = "0002"
branch_labels = None
depends_on = None
oldest_code_revision = "0003_cache_per_workspace"


def upgrade() -> None:
    # 0001 creates the table from the current definition on a new database: then it is keyed by workspace already.
    op.execute(
        f"""
        DO $$
        BEGIN
          IF NOT EXISTS (
            SELECT 1 FROM information_schema.columns
            WHERE table_schema = '{SCHEMA}' AND table_name = 'profile_cache' AND column_name = 'workspace_id'
          ) THEN
            DELETE FROM "{SCHEMA}".profile_cache;
            ALTER TABLE "{SCHEMA}".profile_cache ADD COLUMN workspace_id TEXT NOT NULL;
            ALTER TABLE "{SCHEMA}".profile_cache DROP CONSTRAINT profile_cache_pkey;
            ALTER TABLE "{SCHEMA}".profile_cache ADD PRIMARY KEY (workspace_id, profile_key);
          END IF;
        END $$;
        """
    )
    awaiting_selection.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    awaiting_selection.drop(op.get_bind(), checkfirst=True)
    op.execute(f'DELETE FROM "{SCHEMA}".profile_cache')
    op.execute(f'ALTER TABLE "{SCHEMA}".profile_cache DROP CONSTRAINT profile_cache_pkey')
    op.execute(f'ALTER TABLE "{SCHEMA}".profile_cache DROP COLUMN workspace_id')
    op.execute(f'ALTER TABLE "{SCHEMA}".profile_cache ADD PRIMARY KEY (profile_key)')
