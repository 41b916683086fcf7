"""View as member: a session may look at one organization as a member or a role sees it.

Revision ID: 0013_view_as
Revises: 0012_custom_roles
Create Date: 2026-12-07

Three nullable columns on sessions (invoiceapp.authz.view_as): the organization looked at,
and the member (a user) or the role looked at as. Who is signed in does not change, so
nothing else about the session does either. Deleting the organization or the member ends
the view (SET NULL). SQLite cannot add a foreign key to a table, so batch mode copies it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_view_as"
down_revision: str | Sequence[str] | None = "0012_custom_roles"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("view_as_organization_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("view_as_user_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("view_as_role", sa.String(length=64), nullable=True))
        batch.create_foreign_key(
            op.f("fk_sessions_view_as_organization_id_organizations"),
            "organizations",
            ["view_as_organization_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_foreign_key(
            op.f("fk_sessions_view_as_user_id_users"),
            "users",
            ["view_as_user_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(op.f("ix_sessions_view_as_organization_id"), ["view_as_organization_id"])
        batch.create_index(op.f("ix_sessions_view_as_user_id"), ["view_as_user_id"])


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_index(op.f("ix_sessions_view_as_user_id"))
        batch.drop_index(op.f("ix_sessions_view_as_organization_id"))
        batch.drop_constraint(op.f("fk_sessions_view_as_user_id_users"), type_="foreignkey")
        batch.drop_constraint(
            op.f("fk_sessions_view_as_organization_id_organizations"), type_="foreignkey"
        )
        batch.drop_column("view_as_role")
        batch.drop_column("view_as_user_id")
        batch.drop_column("view_as_organization_id")
