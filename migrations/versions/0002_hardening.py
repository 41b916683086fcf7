"""Hardening: an invoice-number counter per organization, one-time create keys, and a
count of failed re-authentications per session.

Revision ID: 0002_hardening
Revises: 0001_initial
Create Date: 2026-11-28

The counter starts at each organization's highest invoice number, so numbering goes on
where it left off.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_hardening"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(
            sa.Column("last_invoice_number", sa.Integer(), server_default="0", nullable=False)
        )
    op.execute(
        "UPDATE organizations SET last_invoice_number = COALESCE("
        "(SELECT MAX(number) FROM invoices WHERE invoices.organization_id = organizations.id), 0)"
    )
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("creation_key", sa.String(length=64), nullable=True))
    op.create_index(
        op.f("ix_invoices_creation_key"),
        "invoices",
        ["organization_id", "creation_key"],
        unique=True,
    )
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(
            sa.Column("failed_reauthentications", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("failed_reauthentications")
    op.drop_index(op.f("ix_invoices_creation_key"), table_name="invoices")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("creation_key")
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("last_invoice_number")
