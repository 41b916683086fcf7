"""Custom roles: an organization's own roles, made of actions of the policy table.

Revision ID: 0012_custom_roles
Revises: 0011_address_claims
Create Date: 2026-12-07

A new table, custom_roles. Memberships and invitations hold a custom role's key in
their role column, so its CHECK constraint no longer lists the three built-in roles: it
asks for a non-empty, lower-case value. SQLite cannot alter a constraint, so batch mode
copies both tables; the partial index "one owner per organization" is dropped first and
made again after the copy, so it keeps its WHERE clause on both engines.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_custom_roles"
down_revision: str | Sequence[str] | None = "0011_address_claims"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUILT_IN = ("owner", "admin", "member")
BUILT_IN_ONLY = "role IN ('owner', 'admin', 'member')"
ROLE_KEY_SHAPE = "length(role) > 0 AND role = lower(role)"


def _set_role_check(expression: str) -> None:
    op.drop_index("ix_memberships_one_owner", table_name="memberships")
    for table in ("memberships", "invitations"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"ck_{table}_role"), type_="check")
            batch.create_check_constraint(op.f(f"ck_{table}_role"), expression)
    op.create_index(
        "ix_memberships_one_owner",
        "memberships",
        ["organization_id"],
        unique=True,
        sqlite_where=sa.text("role = 'owner'"),
        postgresql_where=sa.text("role = 'owner'"),
    )


def upgrade() -> None:
    op.create_table(
        "custom_roles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("actions", sa.String(length=1000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "key NOT IN ('owner', 'admin', 'member')", name=op.f("ck_custom_roles_key_not_built_in")
        ),
        sa.CheckConstraint(
            "length(key) > 0 AND key = lower(key)", name=op.f("ck_custom_roles_key_shape")
        ),
        sa.CheckConstraint("length(name) > 0", name=op.f("ck_custom_roles_name_not_empty")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_custom_roles_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custom_roles")),
        sa.UniqueConstraint(
            "organization_id", "key", name=op.f("uq_custom_roles_organization_id_key")
        ),
    )
    op.create_index(
        op.f("ix_custom_roles_organization_id"), "custom_roles", ["organization_id"], unique=False
    )
    _set_role_check(ROLE_KEY_SHAPE)


def downgrade() -> None:
    # Members and invitations holding a custom role fall back to the plain member role:
    # the built-in role that can do least, so nobody gains anything by the downgrade.
    for table in ("memberships", "invitations"):
        op.execute(f"UPDATE {table} SET role = 'member' WHERE NOT ({BUILT_IN_ONLY})")
    _set_role_check(BUILT_IN_ONLY)
    op.drop_index(op.f("ix_custom_roles_organization_id"), table_name="custom_roles")
    op.drop_table("custom_roles")
