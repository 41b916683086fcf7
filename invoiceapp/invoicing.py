"""Invoice bookkeeping that views share: ids, numbering, soft deletion."""

from __future__ import annotations

import secrets
import string

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .db import utcnow
from .models import Invoice

_ALPHABET = string.ascii_lowercase + string.digits


def new_public_id() -> str:
    """Random, not the row id: ids in URLs reveal nothing and cannot be enumerated."""
    return "inv_" + "".join(secrets.choice(_ALPHABET) for _ in range(16))


def next_invoice_number(db: Session, organization_id: int) -> int:
    """Numbers count up per organization. The unique constraint settles any race."""
    highest = db.scalar(
        select(func.max(Invoice.number)).where(Invoice.organization_id == organization_id)
    )
    return (highest or 0) + 1


def soft_delete(invoice: Invoice) -> None:
    """The row stays for the record; every lookup treats it as gone (404)."""
    invoice.deleted_at = utcnow()
