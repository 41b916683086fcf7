"""Invoice operations, once, for the pages and the API alike.

Create (with its idempotency key), save changes (a compare-and-set on the version), soft
delete (the same version check, and the status the policy was asked about), status
changes (each a new version), copies, and the CSV export with its formula guard. The
pages (views.invoices) and the JSON API (api.invoices) both call these, so a rule of
the work cannot hold on one and not on the other.

Nothing here decides who may do what: the views run scope (404) and the policy (403)
first, and these functions only do the work once the answer was yes. Nor do they speak
HTTP: they answer True/False (or raise CreationKeyTaken), and each view words its own 409.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
import string
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .db import rows_changed, utcnow
from .models import Invoice, InvoiceCount, InvoiceStatus, Organization
from .money import minor_to_text

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


# --- Create: one invoice per key ----------------------------------------------------------

# A creation key: the new-invoice form's hidden field, or the API's Idempotency-Key header.
CREATION_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class CreationKeyTaken(Exception):
    """The key already made an invoice for someone else: nothing was made (the view's 409)."""


@dataclass(frozen=True)
class Created:
    invoice: Invoice
    replayed: bool  # True: the key had made this invoice before, and nothing new was made


def create_invoice(
    db: Session,
    organization_id: int,
    created_by_id: int,
    values: Mapping[str, Any],
    creation_key: str | None = None,
) -> Created:
    """A new draft with the next number, or the one an earlier request with the key made.

    The key makes a create safe to repeat (a double click, a retry after a timeout): the
    same key from the same person finds the invoice the first request made. Two requests
    with one key at once cannot both insert (a unique index), and the loser finds the
    winner's invoice. ``values`` are columns the caller validated (customer, amount_minor,
    currency, dates); status, number and author are set here, never taken from input.
    This one commits: whether the key was free is known only once the row is written.
    """
    if creation_key and (earlier := _made_with(db, organization_id, creation_key)) is not None:
        return _replay(earlier, created_by_id)
    invoice = Invoice(
        **values,
        public_id=new_public_id(),
        organization_id=organization_id,
        number=allocate_invoice_number(db, organization_id),
        created_by_id=created_by_id,
        status=InvoiceStatus.DRAFT.value,  # every invoice starts as a draft
        creation_key=creation_key,
    )
    db.add(invoice)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()  # the same key, sent twice at once: the other request made it
        earlier = _made_with(db, organization_id, creation_key) if creation_key else None
        if earlier is None:
            raise
        return _replay(earlier, created_by_id)
    return Created(invoice, replayed=False)


def _made_with(db: Session, organization_id: int, creation_key: str) -> Invoice | None:
    return db.scalar(
        select(Invoice).where(
            Invoice.organization_id == organization_id, Invoice.creation_key == creation_key
        )
    )


def _replay(earlier: Invoice, created_by_id: int) -> Created:
    """Only its author gets an invoice back by key: someone else's key answers nothing."""
    if earlier.created_by_id != created_by_id:
        raise CreationKeyTaken()
    return Created(earlier, replayed=True)


# --- Changes, deletion and status: compare-and-set --------------------------------------


def save_changes(db: Session, invoice: Invoice, seen: int, values: Mapping[str, Any]) -> bool:
    """Write ``values`` only if the invoice is still at version ``seen``; a new version.

    ``seen`` is the version the change is based on: the edit form's hidden field, the
    API's If-Match, or else the version this request read. The policy said yes to the
    invoice as read; ``UPDATE … WHERE version = seen`` makes sure it is still that invoice
    (status, author, fields) when the write lands, so of two saves based on one version
    exactly one wins. A save that changes nothing writes nothing (the version stays).
    Returns False when the invoice had moved on (the caller answers 409 or 412, and
    rolls back); the caller commits.
    """
    if seen != invoice.version:
        return False
    if all(getattr(invoice, name) == value for name, value in values.items()):
        return True
    changed = rows_changed(
        db,
        update(Invoice)
        .where(Invoice.id == invoice.id, Invoice.version == seen, Invoice.deleted_at.is_(None))
        .values(**values, version=Invoice.version + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False),
    )
    if changed != 1:
        return False
    db.expire(invoice, [*values, "version", "updated_at"])
    return True


def soft_delete(db: Session, invoice: Invoice, seen: int | None = None) -> bool:
    """Mark ``invoice`` deleted, if it is still the invoice the person decided about.

    The row stays for the record; every lookup treats it as gone (404). Two checks, in
    one ``UPDATE … WHERE``: the status is the one the policy was asked about (a paid
    invoice is never deleted, so a delete racing "Mark paid" loses), and the version is
    ``seen`` (the one the confirmation page or If-Match showed; by default the one read),
    so an invoice edited after it was looked at is not deleted unseen. Returns False when
    the row had moved on (the caller answers 409 or 412); the caller commits. A new
    version too: an edit form or API client holding the old one cannot save over it.
    """
    seen = invoice.version if seen is None else seen
    if seen != invoice.version:
        return False
    now = utcnow()
    deleted = rows_changed(
        db,
        update(Invoice)
        .where(
            Invoice.id == invoice.id,
            Invoice.status == invoice.status,
            Invoice.version == seen,
            Invoice.deleted_at.is_(None),
        )
        .values(deleted_at=now, updated_at=now, version=Invoice.version + 1)
        .execution_options(synchronize_session=False),
    )
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
    paid" and "Void" at once cannot both succeed on the same starting state. It is a new
    version as well, so an edit form or API client holding the old one can no longer save
    over the new status. Returns False when the row had moved on (the caller answers
    409); the caller commits.
    """
    target = TARGET_STATUS[action]
    seen = invoice.status
    changed = rows_changed(
        db,
        update(Invoice)
        .where(Invoice.id == invoice.id, Invoice.status == seen, Invoice.deleted_at.is_(None))
        .values(status=target.value, updated_at=utcnow(), version=Invoice.version + 1)
        .execution_options(synchronize_session=False),
    )
    if changed != 1:
        return False
    db.expire(invoice, ["status", "updated_at", "version"])
    return True


def duplicate_invoice(db: Session, original: Invoice, created_by_id: int) -> Invoice:
    """A new draft with the original's customer, amount and payment terms, issued today.

    It gets the next number and a new public id, and belongs to whoever made the copy:
    a copy of a paid invoice is a fresh draft, never a second paid one. The caller commits.
    """
    today = utcnow().date()  # the injectable clock (invoiceapp.db), as for every other time
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


# --- CSV export --------------------------------------------------------------------------

CSV_COLUMNS = ["id", "number", "customer", "amount", "currency", "status", "issued", "due"]


def invoices_csv(invoices: Iterable[Invoice]) -> str:
    """The invoices as CSV text that spreadsheets open safely.

    A byte-order mark tells spreadsheets the file is UTF-8, so accents survive; every
    field is quoted, so a separator inside a name never starts a new cell; and the
    customer's name, the one free text, goes through csv_safe().
    """
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    for invoice in invoices:
        writer.writerow([
            invoice.public_id, invoice.number, csv_safe(invoice.customer),
            minor_to_text(invoice.amount_minor), invoice.currency, invoice.status,
            invoice.issue_date.isoformat(), invoice.due_date.isoformat(),
        ])  # fmt: skip
    return buffer.getvalue()


# A spreadsheet may split a line on any of these, whatever the file's own separator.
_SEPARATORS = re.compile(r"([,;\t\r\n|])")
_FORMULA_STARTS = ("=", "+", "-", "@")


def csv_safe(text: str) -> str:
    """Text that no spreadsheet runs as a formula (CSV injection), however it splits cells.

    Spreadsheets run a cell that starts with = + - @ as a formula, and a German or French
    one splits ``Acme;=cmd…`` at the ``;``. So every piece between possible separators is
    checked, and one that would start a formula gets a leading apostrophe. Invisible
    characters and spaces in front (a zero-width space, a byte-order mark) do not hide one.
    """
    pieces = _SEPARATORS.split(text)
    for index in range(0, len(pieces), 2):  # even indexes are text, odd ones separators
        piece = pieces[index]
        visible = piece.lstrip("".join(c for c in set(piece) if _is_blank(c)))
        if visible.startswith(_FORMULA_STARTS):
            pieces[index] = "'" + piece
    return "".join(pieces)


def _is_blank(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) in ("Cf", "Zs")
