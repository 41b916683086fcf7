"""Invoice pages. An action on one invoice runs three steps, in the lesson's order:

    invoice = invoice_in_my_orgs_or_404(invoice_id)   # scope: 404, never 403
    authorize("invoice.delete", invoice)              # policy: 403
    ...the work...

The list, the new-invoice form and the export work in one organization instead, and
ask the policy about that organization. Which one is part of the request: every link
carries ``?organization=<slug>`` and the new-invoice form a hidden ``organization`` field,
naming the organization the page was rendered for. A form opened for Acme is answered for
Acme even if another tab switched to Globex meanwhile (what the person saw is what they
get); the server checks that name like any other input: not one of yours, 404; not
allowed there, 403. Only a request that names none (the "Invoices" link in the header, a
script) works in the active organization, the one kept on the server-side session.

The status is never a form field: it is an input to the policy, so it changes only
through actions the policy is asked about one by one (send, mark paid, void), and every
change is written to the organization's audit log.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import date, timedelta

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import Select, select
from sqlalchemy.orm.attributes import set_committed_value

from ..audit import record_audit
from ..authn.gate import login_required
from ..authz.enforce import authorize
from ..authz.policy import Decision, allowed_actions, can, grant_for
from ..authz.scope import (
    NEWEST_FIRST,
    active_organization,
    invoice_in_my_orgs_or_404,
    live_invoices_of,
    organization_in_my_orgs_or_404,
)
from ..db import get_db, utcnow
from ..invoicing import (
    CreationKeyTaken,
    change_status,
    create_invoice,
    duplicate_invoice,
    invoices_csv,
    live_invoice_counts,
    save_changes,
    soft_delete,
)
from ..models import Invoice, InvoiceStatus, Organization
from ..money import minor_to_text
from ..principal import Principal, require_principal
from .invoice_forms import STATUSES, DeleteInvoiceForm, InvoiceForm
from .paging import page_number

bp = Blueprint("invoices", __name__, url_prefix="/invoices")


def _organization_allowing(action: str, named: str | None) -> Organization:
    """The organization this request works in, checked for ``action``.

    ``named`` is the slug the request carries (a link's ``?organization=``, a form's hidden
    field): one of the principal's organizations, or a 404 like a slug that never existed.
    Without one, the active organization. Someone without any membership is sent to the
    dashboard, which explains why.
    """
    if named is not None:
        organization = organization_in_my_orgs_or_404(named)  # scope: 404, never 403
    else:
        found = active_organization(require_principal())
        if found is None:
            flash("You are not a member of any organization yet.", "info")
            abort(redirect(url_for("pages.dashboard"), code=303))
        organization = found
    authorize(action, organization)  # policy: 403, asked about that organization
    return organization


def _named_in_link() -> str | None:
    return request.args.get("organization")


def _named_in_form() -> str | None:
    return request.form.get("organization")


@bp.get("")
@login_required
def index() -> ResponseReturnValue:
    organization = _organization_allowing("invoice.read", _named_in_link())

    status = request.args.get("status", "")
    if status not in STATUSES:
        status = ""
    query = live_invoices_of(organization.id)
    if status:
        query = query.where(Invoice.status == status)
    db = get_db()
    # The total comes from the counts the database keeps (InvoiceCount), not COUNT(*):
    # one small read whether the organization has ten invoices or a hundred thousand.
    counts = live_invoice_counts(db, organization.id)
    total = counts.get(status, 0) if status else sum(counts.values())
    per_page = current_app.config["INVOICES_PER_PAGE"]
    pages = max(1, math.ceil(total / per_page))
    page = min(page_number(), pages)
    invoices = _page_of(query, total, (page - 1) * per_page, per_page)
    return render_template(
        "invoices/index.html",
        organization=organization,
        invoices=invoices,
        status=status,
        statuses=STATUSES,
        page=page,
        pages=pages,
        total=total,
    )


OLDEST_FIRST = (Invoice.created_at.asc(), Invoice.id.asc())


def _page_of(query: Select[Invoice], total: int, start: int, size: int) -> list[Invoice]:
    """Rows ``start`` to ``start + size`` of ``query`` in NEWEST_FIRST order.

    Read from the nearer end: the last page is the first page of the oldest-first order
    (then turned round), so both ends of the list cost the same however long it is. A
    page in the middle still skips up to half the list; the skipping happens in the
    index alone (the inner query reads only ids from ix_invoices_org_listing or
    ix_invoices_org_status_listing), and only the page's own rows are read in full.
    """
    stop = min(start + size, total)
    if stop <= start:
        return []
    if start <= total - stop:
        order, offset, reverse = NEWEST_FIRST, start, False
    else:
        order, offset, reverse = OLDEST_FIRST, total - stop, True
    ids = query.with_only_columns(Invoice.id).order_by(*order).limit(stop - start).offset(offset)
    rows = list(get_db().scalars(select(Invoice).where(Invoice.id.in_(ids)).order_by(*order)))
    return rows[::-1] if reverse else rows


@bp.get("/new")
@login_required
def new() -> ResponseReturnValue:
    organization = _organization_allowing("invoice.create", _named_in_link())
    today = utcnow().date()  # the injectable clock (invoiceapp.db), as for every other time
    form = InvoiceForm(
        formdata=None,
        issue_date=today,
        due_date=today + timedelta(days=30),
        currency="EUR",
        creation_key=secrets.token_urlsafe(24),
    )
    return render_template("invoices/form.html", form=form, organization=organization)


@bp.post("/new")
@login_required
def create() -> ResponseReturnValue:
    # The organization the form was rendered for, not whichever is active now.
    organization = _organization_allowing("invoice.create", _named_in_form())
    form = InvoiceForm()
    if not form.validate_on_submit():
        return render_template("invoices/form.html", form=form, organization=organization), 422

    try:
        created = create_invoice(
            get_db(),
            organization.id,
            require_principal().user.id,
            form.column_values(),
            creation_key=form.creation_key.data or None,
        )
    except CreationKeyTaken:
        abort(409, "This form was already used by someone else. Open a new one and try again.")
    invoice = created.invoice
    if created.replayed:  # a double submit
        return redirect(url_for("invoices.show", invoice_id=invoice.public_id), code=303)
    # Flashed text travels in a signed, readable cookie: no customer data in it.
    flash(f"Invoice {invoice.label} was created.", "success")
    _say_if_not_active(organization)
    return redirect(url_for("invoices.show", invoice_id=invoice.public_id), code=303)


def _say_if_not_active(organization: Organization) -> None:
    """A form answered for another organization than the active one says where it went."""
    active = active_organization(require_principal())
    if active is not None and active.id != organization.id:
        flash(
            f"It was created in {organization.name}, the organization this form was opened "
            f"for. Your active organization is still {active.name}.",
            "info",
        )


@bp.get("/export.csv")
@login_required
def export_csv() -> ResponseReturnValue:
    # The plan is one input: a pro plan without a membership still gets nothing.
    organization = _organization_allowing("invoice.export", _named_in_link())
    invoices = get_db().scalars(live_invoices_of(organization.id).order_by(Invoice.number))
    filename = f"{organization.slug}-invoices.csv"
    return Response(
        invoices_csv(invoices),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.get("/<invoice_id>")
@login_required
def show(invoice_id: str) -> ResponseReturnValue:
    invoice = invoice_in_my_orgs_or_404(invoice_id, only=SHOWN_COLUMNS)
    authorize("invoice.read", invoice)
    principal = require_principal()
    # The page's buttons, asked of the policy in one evaluation (each action asks again).
    buttons = allowed_actions(principal, invoice, INVOICE_BUTTONS)
    return render_template(
        "invoices/show.html",
        invoice=invoice,
        buttons=buttons,
        sending_ends_editing=_sending_ends_editing(principal, invoice, buttons),
        # Someone outside the organization reads it by a share: say whose, and until when.
        grant=grant_for(principal, invoice)
        if principal.role_in(invoice.organization_id) is None
        else None,
    )


# What the invoice page reads of its invoice: templates/invoices/show.html, the policy's
# rules (status, author, organization; the customer for a share) and demo mode's traces.
# Loading these 11 of its 16 columns (the id comes along) saved about 0.02 ms of CPU per
# page on PostgreSQL, where every column of a result costs an object (nothing measurable on
# SQLite); reading any other column here raises (tests/test_view_cost.py).
SHOWN_COLUMNS = (
    "public_id",
    "organization_id",
    "number",
    "customer",
    "amount_minor",
    "currency",
    "status",
    "issue_date",
    "due_date",
    "created_by_id",
)

# The actions the invoice page offers a button for (templates/invoices/show.html).
INVOICE_BUTTONS = (
    "invoice.update",
    "invoice.send",
    "invoice.mark_paid",
    "invoice.void",
    "invoice.duplicate",
    "invoice.delete",
)


def _sending_ends_editing(principal: Principal, invoice: Invoice, buttons: frozenset[str]) -> bool:
    """Whether this person may edit the draft now, but would not once it is sent.

    Asked of the policy about the same invoice as it would be after sending, rather than
    spelled out here ("a member…"), so the warning cannot drift from the rule it warns of.
    """
    if not {"invoice.send", "invoice.update"} <= buttons:
        return False
    # Never added to the session: only the fields the update rule reads.
    as_sent = Invoice(
        organization_id=invoice.organization_id,
        created_by_id=invoice.created_by_id,
        status=InvoiceStatus.SENT.value,
    )
    # The policy reads the organization off the invoice; set without events, so the copy
    # never joins the organization's invoices (and so the session) by a backref.
    set_committed_value(as_sent, "organization", invoice.organization)
    return not can(principal, "invoice.update", as_sent)


@bp.get("/<invoice_id>/edit")
@login_required
def edit(invoice_id: str) -> ResponseReturnValue:
    invoice = invoice_in_my_orgs_or_404(invoice_id)
    authorize("invoice.update", invoice)
    form = InvoiceForm(formdata=None, obj=invoice, amount=minor_to_text(invoice.amount_minor))
    return render_template("invoices/form.html", form=form, invoice=invoice)


@bp.post("/<invoice_id>/edit")
@login_required
def update(invoice_id: str) -> ResponseReturnValue:
    invoice = invoice_in_my_orgs_or_404(invoice_id)
    authorize("invoice.update", invoice)
    form = InvoiceForm()
    if not form.validate_on_submit():
        return render_template("invoices/form.html", form=form, invoice=invoice), 422
    # The version the form was filled from; a post without one (a script) is checked
    # against the version this request read instead.
    seen = form.version_seen()
    if seen is None:
        seen = invoice.version
    db = get_db()
    if not save_changes(db, invoice, seen, form.column_values()):
        db.rollback()
        return _edit_conflict(invoice, form)
    db.commit()
    flash(f"Invoice {invoice.label} was saved.", "success")
    return redirect(url_for("invoices.show", invoice_id=invoice.public_id), code=303)


@dataclass(frozen=True)
class ConflictRow:
    label: str
    saved: str
    attempted: str

    @property
    def differs(self) -> bool:
        return self.saved != self.attempted


def _edit_conflict(invoice: Invoice, attempted: InvoiceForm) -> ResponseReturnValue:
    """409: someone saved the invoice after this form was filled. Nothing is saved.

    The page shows the invoice as it is saved now, side by side with what this person
    entered; the form holds the saved values and version, so saving again without
    looking changes nothing that the other person did.
    """
    db = get_db()
    db.refresh(invoice)
    if invoice.deleted_at is not None:
        abort(404)
    current = InvoiceForm(formdata=None, obj=invoice, amount=minor_to_text(invoice.amount_minor))
    rows = [
        ConflictRow("Customer", invoice.customer, attempted.customer.data or ""),
        ConflictRow(
            "Amount",
            minor_to_text(invoice.amount_minor),
            minor_to_text(attempted.amount_minor) if attempted.amount_minor else "",
        ),
        ConflictRow("Currency", invoice.currency, attempted.currency.data or ""),
        ConflictRow("Issue date", invoice.issue_date.isoformat(), _iso(attempted.issue_date.data)),
        ConflictRow("Due date", invoice.due_date.isoformat(), _iso(attempted.due_date.data)),
        ConflictRow("Status", invoice.status, "(unchanged)"),
    ]
    html = render_template("invoices/form.html", form=current, invoice=invoice, conflict=rows)
    return html, 409


def _iso(value: date | None) -> str:
    return value.isoformat() if value else ""


@bp.get("/<invoice_id>/delete")
@login_required
def confirm_delete(invoice_id: str) -> ResponseReturnValue:
    invoice = invoice_in_my_orgs_or_404(invoice_id)
    authorize("invoice.delete", invoice)
    form = DeleteInvoiceForm(formdata=None, version=invoice.version)
    return render_template("invoices/delete.html", invoice=invoice, form=form)


@bp.post("/<invoice_id>/delete")
@login_required  # authentication gate: 401
def delete(invoice_id: str) -> ResponseReturnValue:
    invoice = invoice_in_my_orgs_or_404(invoice_id)  # scope: 404, never 403
    decision = authorize("invoice.delete", invoice)  # authorization gate: 403
    form = DeleteInvoiceForm()
    if not form.validate():
        abort(422, "This form is damaged. Reload the page.")
    db = get_db()
    # The version the confirmation page showed; a post without one (a script, the tour's
    # button) is checked against the version this request read, as an API DELETE is.
    if not soft_delete(db, invoice, form.version_seen()):
        # Edited, marked paid or deleted since the page was opened: the person decided
        # about an invoice that is no longer there as they saw it. Nothing is deleted.
        db.rollback()
        abort(
            409,
            "This invoice was changed by someone else after you opened this page, so it "
            "was not deleted. Open it again to see what changed, then decide.",
        )
    db.commit()
    _record_done("invoice.delete", invoice, decision.reason)
    flash(f"Invoice {invoice.label} was deleted.", "success")
    # Back to the list it was in, whichever organization another tab made active since.
    return redirect(url_for("invoices.index", organization=invoice.organization.slug), code=303)


# --- Status changes and copies: one POST per action, each asked of the policy ----------


@bp.post("/<invoice_id>/send")
@login_required  # authentication gate: 401
def send(invoice_id: str) -> ResponseReturnValue:
    invoice = invoice_in_my_orgs_or_404(invoice_id)  # scope: 404, never 403
    decision = authorize("invoice.send", invoice)  # authorization gate: 403
    return _change_status(invoice, decision, "sent")


@bp.post("/<invoice_id>/mark-paid")
@login_required
def mark_paid(invoice_id: str) -> ResponseReturnValue:
    invoice = invoice_in_my_orgs_or_404(invoice_id)
    decision = authorize("invoice.mark_paid", invoice)
    return _change_status(invoice, decision, "marked paid")


@bp.post("/<invoice_id>/void")
@login_required
def void(invoice_id: str) -> ResponseReturnValue:
    invoice = invoice_in_my_orgs_or_404(invoice_id)
    decision = authorize("invoice.void", invoice)
    return _change_status(invoice, decision, "voided")


@bp.post("/<invoice_id>/duplicate")
@login_required
def duplicate(invoice_id: str) -> ResponseReturnValue:
    invoice = invoice_in_my_orgs_or_404(invoice_id)
    decision = authorize("invoice.duplicate", invoice)  # the flag is a rule input: 403 when off
    db = get_db()
    copy = duplicate_invoice(db, invoice, created_by_id=require_principal().user.id)
    db.commit()
    _record_done("invoice.duplicate", invoice, f"{decision.reason}; the copy is {copy.public_id}")
    flash(f"Invoice {invoice.label} was copied to a new draft, {copy.label}.", "success")
    return redirect(url_for("invoices.show", invoice_id=copy.public_id), code=303)


def _change_status(invoice: Invoice, decision: Decision, done: str) -> ResponseReturnValue:
    """The work after the policy said yes: change, commit, record, tell, redirect."""
    db = get_db()
    if not change_status(db, invoice, decision.action):
        # Someone changed it between our read and our write: the yes was for a status
        # that no longer holds. Nothing was changed; a reload shows what is there now.
        db.rollback()
        abort(409, "This invoice was changed by someone else just now. Reload it and try again.")
    db.commit()
    _record_done(decision.action, invoice, decision.reason)
    flash(f"Invoice {invoice.label} was {done}.", "success")
    return redirect(url_for("invoices.show", invoice_id=invoice.public_id), code=303)


def _record_done(action: str, invoice: Invoice, reason: str = "") -> None:
    """An allowed, completed action in the invoice's organization's log (after the commit,
    so a rolled-back change is never recorded as done)."""
    record_audit(
        action,
        organization_id=invoice.organization_id,
        resource_id=invoice.public_id,
        status=303,
        reason=reason,
    )
