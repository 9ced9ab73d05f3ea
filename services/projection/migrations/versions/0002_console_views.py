"""The console's views: timeline details, account health and campaigns, review counters, the change log.

Revision ID: 0002

Revision 0001 creates every table from the current definitions, so on a new schema this finds
everything in place; on a schema made before it, it adds the new tables and columns (their rows fill
for new events; ``leadstream replay`` rebuilds them for old ones).
"""

from alembic import context, op
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateColumn

from services.projection.store import SCHEMA, build_views
from services.runtime.db import service_metadata

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NEW_COLUMNS = {
    "timeline": ("detail",),
    "lead_campaign": ("drafts_review", "drafts_decided"),
    "campaign_summary": ("drafts_pending",),
    "accounts": ("status_changed_at", "connected_at"),
}
NEW_TABLES = ("account_campaigns", "changes")


def upgrade() -> None:
    schema = context.config.attributes.get("schema") or SCHEMA
    metadata, _ = service_metadata(schema)
    build_views(metadata)
    bind = op.get_bind()
    for table, columns in NEW_COLUMNS.items():
        for name in columns:
            ddl = CreateColumn(metadata.tables[f"{schema}.{table}"].c[name]).compile(dialect=postgresql.dialect())
            op.execute(f'ALTER TABLE "{schema}"."{table}" ADD COLUMN IF NOT EXISTS {ddl}')
    for table in NEW_TABLES:
        metadata.tables[f"{schema}.{table}"].create(bind, checkfirst=True)


def downgrade() -> None:
    schema = context.config.attributes.get("schema") or SCHEMA
    for table in NEW_TABLES:
        op.execute(f'DROP TABLE IF EXISTS "{schema}"."{table}"')
    for table, columns in NEW_COLUMNS.items():
        for name in columns:
            op.execute(f'ALTER TABLE "{schema}"."{table}" DROP COLUMN IF EXISTS {name}')
