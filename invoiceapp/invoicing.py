"""Invoice bookkeeping that views share: ids, numbering, status changes, copies, soft deletion.

Nothing here decides who may do what: the views ask the policy first (authorize), and
these functions only do the work once the answer was yes.
"""

from __future__ import annotations

import secrets
import string
from datetime import date

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .db import utcnow
from .models import Invoice, InvoiceCount, InvoiceStatus, Organization

_ALPHABET = string.ascii_lowercase + string.digits
# Random bytes become characters in one C-level pass (bytes.translate), not sixteen
# secrets.choice() calls: the seed makes 200,000 ids for `--invoices 100000`. Byte values
# 0..251 map evenly onto the 36 characters (252 = 7 x 36); 252..255 are dropped, so every
# character stays uniformly random.
_BYTE_TO_CHAR = bytes(ord(_ALPHABET[value % len(_ALPHABET)]) for value in range(256))
_UNEVEN_BYTES = bytes(range(252, 256))


def new_public_id() -> str:
    """Random, not the row id: ids in URLs reveal nothing and cannot be enumerated."""
    chars = b""
    while len(chars) < 16:  # 24 bytes nearly always leave 16 (each is dropped at 1 in 64)
        chars += secrets.token_bytes(24).translate(_BYTE_TO_CHAR, _UNEVEN_BYTES)
    return "inv_" + chars[:16].decode("ascii")


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


def live_invoice_counts(db: Session, organization_id: int) -> dict[str, int]:
    """Status -> how many live invoices the organization has: a few rows, at any size.

    Kept by triggers in the database (invoiceapp.models.InvoiceCount), never by this app.
    """
    rows = db.execute(
        select(InvoiceCount.status, InvoiceCount.live_count).where(
            InvoiceCount.organization_id == organization_id
        )
    )
    return {status: count for status, count in rows if count}


def soft_delete(db: Session, invoice: Invoice) -> bool:
    """Mark ``invoice`` deleted, if its status is still the one this request read.

    The row stays for the record; every lookup treats it as gone (404). The policy was
    asked about the status as read (a paid invoice is never deleted), so ``UPDATE … WHERE
    status = <that status>`` refuses to delete an invoice that was marked paid in between.
    Returns False when the row had moved on (the caller answers 409); the caller commits.
    A new version too: an edit form or API client holding the old one cannot save over it.
    """
    now = utcnow()
    deleted = db.execute(
        update(Invoice)
        .where(
            Invoice.id == invoice.id,
            Invoice.status == invoice.status,
            Invoice.deleted_at.is_(None),
        )
        .values(deleted_at=now, updated_at=now, version=Invoice.version + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if deleted != 1:
        return False
    db.expire(invoice, ["deleted_at", "updated_at", "version"])
    return True


# The status each status-changing action leads to. Which statuses it may start from is a
# rule of the policy (invoiceapp.authz.policy.INVOICE_STATES), asked before this runs.
TARGET_STATUS: dict[str, InvoiceStatus] = {
    "invoice.send": InvoiceStatus.SENT,
    "invoice.mark_paid": InvoiceStatus.PAID,
    "invoice.void": InvoiceStatus.VOID,
}


def change_status(db: Session, invoice: Invoice, action: str) -> bool:
    """Move ``invoice`` to the status ``action`` leads to, if nobody changed it meanwhile.

    The policy was asked about the status this request read. ``UPDATE … WHERE status =
    <that status>`` makes the change only if it still holds, so two people pressing "Mark
    paid" and "Void" at once cannot both succeed on the same starting state. Returns False
    when the row had moved on (the caller answers 409); the caller commits.
    """
    target = TARGET_STATUS[action]
    seen = invoice.status
    changed = db.execute(
        update(Invoice)
        .where(Invoice.id == invoice.id, Invoice.status == seen, Invoice.deleted_at.is_(None))
        .values(status=target.value, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:
        return False
    db.expire(invoice, ["status", "updated_at"])
    return True


def duplicate_invoice(db: Session, original: Invoice, created_by_id: int) -> Invoice:
    """A new draft with the original's customer, amount and payment terms, issued today.

    It gets the next number and a new public id, and belongs to whoever made the copy:
    a copy of a paid invoice is a fresh draft, never a second paid one. The caller commits.
    """
    today = date.today()
    terms = original.due_date - original.issue_date
    copy = Invoice(
        public_id=new_public_id(),
        organization_id=original.organization_id,
        number=allocate_invoice_number(db, original.organization_id),
        customer=original.customer,
        amount_minor=original.amount_minor,
        currency=original.currency,
        status=InvoiceStatus.DRAFT.value,
        issue_date=today,
        due_date=today + terms,
        created_by_id=created_by_id,
    )
    db.add(copy)
    return copy
