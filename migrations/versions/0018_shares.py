"""Shares: one customer's invoices shared with a person outside the organization.

Revision ID: 0018_shares
Revises: 0017_audit_chain
Create Date: 2026-12-07

One table (invoiceapp.models.Share). A share is mailed like an invitation (only the
token's SHA-256 is kept) and, once accepted, names its guest: a grant that can() reads
until it expires or is revoked. Deleting the organization or the guest deletes it;
deleting whoever shared it keeps it (SET NULL).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_shares"
down_revision: str | Sequence[str] | None = "0017_audit_chain"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shares",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("customer", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("access", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("shared_by_id", sa.Integer(), nullable=True),
        sa.Column("guest_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_shares_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["shared_by_id"],
            ["users.id"],
            name=op.f("fk_shares_shared_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["guest_id"], ["users.id"], name=op.f("fk_shares_guest_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shares")),
        sa.UniqueConstraint("public_id", name=op.f("uq_shares_public_id")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_shares_token_hash")),
        sa.CheckConstraint("access IN ('read', 'read_mark_paid')", name=op.f("ck_shares_access")),
        sa.CheckConstraint("length(customer) > 0", name=op.f("ck_shares_customer_not_empty")),
    )
    op.create_index(op.f("ix_shares_organization_id"), "shares", ["organization_id"])
    op.create_index(op.f("ix_shares_shared_by_id"), "shares", ["shared_by_id"])
    op.create_index(op.f("ix_shares_guest_id"), "shares", ["guest_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_shares_guest_id"), table_name="shares")
    op.drop_index(op.f("ix_shares_shared_by_id"), table_name="shares")
    op.drop_index(op.f("ix_shares_organization_id"), table_name="shares")
    op.drop_table("shares")
