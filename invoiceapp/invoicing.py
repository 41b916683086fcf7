"""Invoice bookkeeping that views share: ids, numbering, soft deletion."""

from __future__ import annotations

import secrets
import string

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .db import utcnow
from .models import Invoice, Organization

_ALPHABET = string.ascii_lowercase + string.digits


def new_public_id() -> str:
    """Random, not the row id: ids in URLs reveal nothing and cannot be enumerated."""
    return "inv_" + "".join(secrets.choice(_ALPHABET) for _ in range(16))


def allocate_invoice_number(db: Session, organization_id: int) -> int:
    """The organization's next invoice number, taken inside the caller's transaction.

    ``UPDATE … RETURNING`` locks the organization's row (PostgreSQL) or the database
    (SQLite) until the caller commits, so two creates can never get the same number and
    need no retries. A rollback gives the number back: no gaps.
    """
    return db.execute(
        update(Organization)
        .where(Organization.id == organization_id)
        .values(last_invoice_number=Organization.last_invoice_number + 1)
        .returning(Organization.last_invoice_number)
        .execution_options(synchronize_session=False)
    ).scalar_one()


def catch_up_invoice_counters(db: Session) -> None:
    """For code that numbers invoices itself (the seed): the counters resume after them."""
    highest = (
        select(func.coalesce(func.max(Invoice.number), 0))
        .where(Invoice.organization_id == Organization.id)
        .scalar_subquery()
    )
    db.execute(
        update(Organization)
        .values(last_invoice_number=highest)
        .execution_options(synchronize_session=False)
    )


def soft_delete(invoice: Invoice) -> None:
    """The row stays for the record; every lookup treats it as gone (404)."""
    invoice.deleted_at = utcnow()
