"""Runtime tables and the probe's effects, in the schema the service runs with (``probe`` by default).

Revision ID: 0001
"""

from alembic import context, op

from services.runtime.migrations import create_runtime_tables, drop_runtime_tables
from tests.support.probe.store import SCHEMA, effects

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _schema() -> str:
    return str(context.config.attributes.get("schema") or SCHEMA)


def upgrade() -> None:
    schema = _schema()
    create_runtime_tables(schema)
    effects.create(op.get_bind().execution_options(schema_translate_map={SCHEMA: schema}))


def downgrade() -> None:
    schema = _schema()
    effects.drop(op.get_bind().execution_options(schema_translate_map={SCHEMA: schema}))
    drop_runtime_tables(schema)
