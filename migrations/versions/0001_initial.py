"""Initial schema: organizations, users, memberships, invoices, sessions.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26

Constraint and index names follow invoiceapp.db.NAMING_CONVENTION (op.f marks a
name as final, so the convention is not applied a second time). Timestamps are
invoiceapp.db.UTCDateTime in the models, which is DateTime(timezone=True) in the
database. tests/test_migrations.py checks this file against the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENCIES = "'EUR', 'USD', 'GBP', 'CHF', 'CAD', 'AUD', 'SEK', 'NOK', 'DKK'"


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("plan", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
        sa.UniqueConstraint("slug", name=op.f("uq_organizations_slug")),
        sa.CheckConstraint("plan IN ('free', 'pro')", name=op.f("ck_organizations_plan")),
        sa.CheckConstraint("length(slug) > 0", name=op.f("ck_organizations_slug_not_empty")),
    )

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.CheckConstraint("email = lower(email)", name=op.f("ck_users_email_lowercase")),
    )

    op.create_table(
        "memberships",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memberships")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_memberships_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_memberships_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "user_id", "organization_id", name=op.f("uq_memberships_user_id_organization_id")
        ),
        sa.CheckConstraint(
            "role IN ('owner', 'admin', 'member')", name=op.f("ck_memberships_role")
        ),
    )
    op.create_index(
        op.f("ix_memberships_organization_id"), "memberships", ["organization_id"], unique=False
    )

    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("customer", sa.String(length=200), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_invoices_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_invoices_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint("public_id", name=op.f("uq_invoices_public_id")),
        sa.UniqueConstraint(
            "organization_id", "number", name=op.f("uq_invoices_organization_id_number")
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'sent', 'paid', 'void')", name=op.f("ck_invoices_status")
        ),
        sa.CheckConstraint(f"currency IN ({CURRENCIES})", name=op.f("ck_invoices_currency")),
        sa.CheckConstraint(
            "amount_minor > 0 AND amount_minor <= 100000000000",
            name=op.f("ck_invoices_amount_range"),
        ),
        sa.CheckConstraint("length(customer) > 0", name=op.f("ck_invoices_customer_not_empty")),
        sa.CheckConstraint("due_date >= issue_date", name=op.f("ck_invoices_due_after_issue")),
        sa.CheckConstraint("number > 0", name=op.f("ck_invoices_number_positive")),
    )
    # The invoice list: one organization's live invoices, newest first.
    op.create_index(
        "ix_invoices_org_listing",
        "invoices",
        ["organization_id", "deleted_at", "created_at"],
        unique=False,
    )
    # ON DELETE SET NULL on a user has to find that user's invoices without a scan.
    op.create_index(op.f("ix_invoices_created_by_id"), "invoices", ["created_by_id"], unique=False)

    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("active_organization_id", sa.Integer(), nullable=True),
        sa.Column("remember", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("authenticated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip_address", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["active_organization_id"],
            ["organizations.id"],
            name=op.f("fk_sessions_active_organization_id_organizations"),
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint("public_id", name=op.f("uq_sessions_public_id")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_sessions_token_hash")),
    )
    op.create_index(op.f("ix_sessions_user_id"), "sessions", ["user_id"], unique=False)
    op.create_index(
        op.f("ix_sessions_active_organization_id"),
        "sessions",
        ["active_organization_id"],
        unique=False,
    )


def downgrade() -> None:
    # Children before parents; dropping a table drops its indexes with it.
    op.drop_table("sessions")
    op.drop_table("invoices")
    op.drop_table("memberships")
    op.drop_table("users")
    op.drop_table("organizations")
