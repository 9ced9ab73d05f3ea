"""Workspace plans and add-ons (``services/runtime/plans.py``).

Workspaces that already have a token are grandfathered onto Scale with the Video add-on, so nothing they
used stops working; workspaces made from now on start on Starter (no row) until they upgrade.

Revision ID: 0003_workspace_plans
"""

from alembic import op

from services.runtime.identity import IDENTITY_SCHEMA, workspace_plans

revision = "0003_workspace_plans"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    workspace_plans.create(op.get_bind())
    op.execute(
        f'INSERT INTO "{IDENTITY_SCHEMA}".workspace_plans (workspace_id, plan, add_ons, updated_at) '
        f"SELECT DISTINCT workspace_id, 'scale', '[\"video\"]'::jsonb, now() FROM \"{IDENTITY_SCHEMA}\".api_tokens "
        "ON CONFLICT DO NOTHING"
    )


def downgrade() -> None:
    workspace_plans.drop(op.get_bind())
