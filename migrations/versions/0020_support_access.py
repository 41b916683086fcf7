"""Support access with the customer's consent: a staff flag, support grants, and the two
audit columns that name whose permission a support engineer acted under.

Revision ID: 0020_support_access
Revises: 0019_audit_retention
Create Date: 2026-12-07

users gains ``is_staff`` (set only by ``flask staff grant``). support_grants holds each
request and the owner's answer (invoiceapp.support_access); a partial unique index keeps
one open request or grant per engineer and organization. audit_events gains
``on_behalf_basis`` and ``support_reason`` (NULL except during support access).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_support_access"
down_revision: str | Sequence[str] | None = "0019_audit_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "state IN ('requested', 'approved')"


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("is_staff", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    # audit_events is append-only by trigger; adding nullable columns touches no row.
    op.add_column("audit_events", sa.Column("on_behalf_basis", sa.String(300), nullable=True))
    op.add_column("audit_events", sa.Column("support_reason", sa.String(500), nullable=True))
    op.create_table(
        "support_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("staff_user_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("role", sa.String(length=16), server_default="read_only", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_by_id", sa.Integer(), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "state IN ('requested', 'approved', 'denied', 'ended')",
            name=op.f("ck_support_grants_state"),
        ),
        sa.CheckConstraint(
            "length(reason) >= 10 AND length(reason) <= 500",
            name=op.f("ck_support_grants_reason_length"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            ondelete="CASCADE",
            name=op.f("fk_support_grants_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["staff_user_id"],
            ["users.id"],
            ondelete="CASCADE",
            name=op.f("fk_support_grants_staff_user_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["approved_by_id"],
            ["users.id"],
            ondelete="SET NULL",
            name=op.f("fk_support_grants_approved_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["ended_by_id"],
            ["users.id"],
            ondelete="SET NULL",
            name=op.f("fk_support_grants_ended_by_id_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_grants")),
    )
    op.create_index(
        op.f("ix_support_grants_organization_id"), "support_grants", ["organization_id"]
    )
    op.create_index(op.f("ix_support_grants_staff_user_id"), "support_grants", ["staff_user_id"])
    op.create_index(
        "ux_support_grants_open",
        "support_grants",
        ["organization_id", "staff_user_id"],
        unique=True,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("ux_support_grants_open", table_name="support_grants")
    op.drop_index(op.f("ix_support_grants_staff_user_id"), table_name="support_grants")
    op.drop_index(op.f("ix_support_grants_organization_id"), table_name="support_grants")
    op.drop_table("support_grants")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("support_reason")
        batch.drop_column("on_behalf_basis")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("is_staff")
