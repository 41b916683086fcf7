"""Invoices as JSON. Every handler runs the lesson's steps, in the pages' order:

    invoice = invoice_or_404(invoice_id)       # scope: 404, never 403
    authorize("invoice.update", invoice)       # policy: 403 (a read token: insufficient_scope)
    ...the work: preconditions, body, compare-and-set, commit

Lists and creation work in one organization: ``?organization=<slug>`` or the active one
(a token's own organization). The status never comes from a body; it changes only by
the invoice's actions on the pages, each asked of the policy.

The work itself is invoiceapp.invoicing's, the same functions the pages call: a create
with an ``Idempotency-Key`` header is the new-invoice form's creation key, and a write
is the same compare-and-set on the version as the edit form's and the delete button's.
"""

from __future__ import annotations

from flask import Response, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import BadRequest, Conflict

from .. import invoicing  # the work, shared with the pages (its names match these views')
from ..audit import record_audit
from ..authn.gate import login_required
from ..authz.enforce import authorize
from ..authz.scope import live_invoices_of
from ..db import get_db
from ..models import Invoice
from ..money import minor_to_text
from ..principal import require_principal
from .blueprint import operation
from .lookups import chosen_organization_or_404, invoice_or_404
from .pagination import InvalidCursor, keyset_page
from .preconditions import etag_of, lost_race, version_seen
from .registry import ValidationFailed, read_body, read_query, respond
from .schemas import (
    InvoiceChanges,
    InvoiceListQuery,
    InvoiceOut,
    InvoicePage,
    NewInvoice,
    OrganizationQuery,
)


@operation("GET", "/invoices", query=InvoiceListQuery, response=InvoicePage, errors=(403, 404))
@login_required  # authentication gate: 401
def list_invoices() -> Response:
    """List invoices, newest first.

    In ?organization=<slug>, or else the active organization (a token's own). Filter with
    ?status=; page with ?limit= and the next_cursor of the previous page.
    """
    query = read_query(InvoiceListQuery)
    organization = chosen_organization_or_404(query.organization)  # scope: 404
    authorize("invoice.read", organization)  # policy: 403
    invoices = live_invoices_of(organization.id).options(selectinload(Invoice.created_by))
    if query.status is not None:
        invoices = invoices.where(Invoice.status == query.status)
    page, next_cursor = keyset_page(
        invoices,
        kind="invoices",
        # The pages' order (NEWEST_FIRST), which the listing index serves as it is...
        created_at=Invoice.created_at,
        tie=Invoice.id,
        # ...but the cursor names the last row by its public id, never its row number.
        position=lambda invoice: (invoice.created_at, invoice.public_id),
        tie_type=str,
        tie_of=lambda public_id: _row_number(organization.id, public_id),
        limit=query.limit,
        cursor=query.cursor,
    )
    return respond(InvoicePage(items=[_out(i) for i in page], next_cursor=next_cursor))


@operation(
    "POST",
    "/invoices",
    query=OrganizationQuery,
    body=NewInvoice,
    response=InvoiceOut,
    status=201,
    errors=(403, 404, 409),
    headers=("ETag", "Location"),
    idempotency_key=True,
)
@login_required
def create_invoice() -> Response:
    """Create a draft invoice.

    In ?organization=<slug>, or else the active organization (a token's own). Its author
    is the caller; its status is draft. Send an Idempotency-Key to make a retry safe: the
    same key again answers the invoice it made (Idempotent-Replayed: true), never a second.
    """
    organization = chosen_organization_or_404(read_query(OrganizationQuery).organization)
    authorize("invoice.create", organization)
    new = read_body(NewInvoice)
    try:
        created = invoicing.create_invoice(
            get_db(),
            organization.id,
            require_principal().user.id,
            new.column_values(),
            creation_key=_idempotency_key(),
        )
    except invoicing.CreationKeyTaken:
        raise Conflict("This Idempotency-Key was already used. Send a new one.") from None
    invoice = created.invoice
    headers = {
        "ETag": etag_of(invoice),
        "Location": url_for("api.get_invoice", invoice_id=invoice.public_id),
    }
    if created.replayed:
        headers["Idempotent-Replayed"] = "true"
    return respond(_out(invoice), status=201, headers=headers)


def _idempotency_key() -> str | None:
    """The request's Idempotency-Key header: 16 to 64 letters, digits, ``-`` or ``_``.

    A structured-field string in quotes (the IETF draft's form) is read as the same key.
    """
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not invoicing.CREATION_KEY.match(key):
        raise BadRequest("Idempotency-Key must be 16 to 64 letters, digits, '-' or '_'.")
    return key


@operation(
    "GET", "/invoices/<invoice_id>", response=InvoiceOut, errors=(403, 404), headers=("ETag",)
)
@login_required
def get_invoice(invoice_id: str) -> Response:
    """Read one invoice. Its ETag is the version to send back in If-Match."""
    invoice = invoice_or_404(invoice_id)  # scope: 404, never 403
    authorize("invoice.read", invoice)  # policy: 403
    return respond(_out(invoice), headers={"ETag": etag_of(invoice)})


@operation(
    "PATCH",
    "/invoices/<invoice_id>",
    body=InvoiceChanges,
    response=InvoiceOut,
    errors=(403, 404, 409, 412),
    if_match=True,
    headers=("ETag",),
)
@login_required
def update_invoice(invoice_id: str) -> Response:
    """Change an invoice's customer, amount, currency or dates.

    Send If-Match with the ETag you read: 412 when someone changed the invoice since.
    Without it the change is based on the version as this request reads it: 409 if
    another write lands in between. The status cannot be changed here.
    """
    invoice = invoice_or_404(invoice_id)  # scope: 404, never 403
    authorize("invoice.update", invoice)  # policy: 403 (members: own drafts; never paid)
    seen = version_seen(invoice)  # 412, before the body is even read
    changes = read_body(InvoiceChanges)  # 415 / 400 / 422
    values = changes.column_values()
    issue_date = values.get("issue_date", invoice.issue_date)
    if values.get("due_date", invoice.due_date) < issue_date:
        raise ValidationFailed({"due_date": ["The due date cannot be before the issue date."]})
    _commit_or_lost_race(invoicing.save_changes(get_db(), invoice, seen, values))
    get_db().refresh(invoice)
    return respond(_out(invoice), headers={"ETag": etag_of(invoice)})


@operation(
    "DELETE", "/invoices/<invoice_id>", status=204, errors=(403, 404, 409, 412), if_match=True
)
@login_required
def delete_invoice(invoice_id: str) -> Response:
    """Delete an invoice (softly: the row stays for the record).

    Only a draft or a sent invoice: a paid one is voided instead, and a void one stays as
    the record (403 naming the invoice state rule). If-Match as for PATCH; with or without
    it, an invoice that changed under you (marked paid meanwhile, say) is not deleted.
    """
    invoice = invoice_or_404(invoice_id)
    decision = authorize("invoice.delete", invoice)
    seen = version_seen(invoice)  # 412
    _commit_or_lost_race(invoicing.soft_delete(get_db(), invoice, seen))
    record_audit(
        "invoice.delete",
        organization_id=invoice.organization_id,
        resource_id=invoice.public_id,
        status=204,
        reason=decision.reason,
    )
    return respond(None, status=204)


def _row_number(organization_id: int, public_id: str) -> int:
    """The row a cursor ends at, in this organization; deleted since is fine (rows stay)."""
    row = get_db().scalar(
        select(Invoice.id).where(
            Invoice.public_id == public_id, Invoice.organization_id == organization_id
        )
    )
    if row is None:
        raise InvalidCursor()
    return row


def _commit_or_lost_race(written: bool) -> None:
    """Commit a compare-and-set that won; one that found a newer version is 412 or 409."""
    db = get_db()
    if not written:
        db.rollback()
        raise lost_race()
    db.commit()


def _out(invoice: Invoice) -> InvoiceOut:
    return InvoiceOut(
        id=invoice.public_id,
        number=invoice.number,
        organization=invoice.organization.slug,
        customer=invoice.customer,
        amount=minor_to_text(invoice.amount_minor),
        currency=invoice.currency,
        status=invoice.status,
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        created_by=invoice.created_by.email if invoice.created_by else None,
        created_at=invoice.created_at,
        updated_at=invoice.updated_at,
        version=invoice.version,
    )
