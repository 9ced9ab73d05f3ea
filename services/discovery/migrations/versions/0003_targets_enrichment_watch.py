"""Targets count new leads (``searches.run_new``), enrichment on selection per source group
(``source_groups.enrichment``, ``leads.enrichment``), and the posts watch (``post_watches``, ``watched_posts``).

Expand-only: older code ignores the new columns and tables. 0001 creates tables from the current ``store``
definitions, so the columns may exist already.

Revision ID: 0003_targets_enrichment_watch
"""

from alembic import op

from services.discovery.store import SCHEMA, post_watches, watched_posts

revision = "0003_targets_enrichment_watch"
down_revision = "0002_search_retry_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(f'ALTER TABLE "{SCHEMA}".searches ADD COLUMN IF NOT EXISTS run_new INTEGER NOT NULL DEFAULT 0')
    op.execute(
        f"ALTER TABLE \"{SCHEMA}\".source_groups ADD COLUMN IF NOT EXISTS enrichment TEXT NOT NULL DEFAULT 'automatic'"
    )
    op.execute(f"ALTER TABLE \"{SCHEMA}\".leads ADD COLUMN IF NOT EXISTS enrichment TEXT NOT NULL DEFAULT 'automatic'")
    for table in (post_watches, watched_posts):
        table.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    for table in (watched_posts, post_watches):
        table.drop(op.get_bind(), checkfirst=True)
    op.execute(f'ALTER TABLE "{SCHEMA}".leads DROP COLUMN IF EXISTS enrichment')
    op.execute(f'ALTER TABLE "{SCHEMA}".source_groups DROP COLUMN IF EXISTS enrichment')
    op.execute(f'ALTER TABLE "{SCHEMA}".searches DROP COLUMN IF EXISTS run_new')
