"""Access review: /orgs/<slug>/access?invoice=<id> or ?member=<user id> (&format=csv).

Owners and admins only (audit.read, like the audit log: it shows who may do what). The
answers come from invoiceapp.authz.access, which asks the same can() a request asks.
"""

from __future__ import annotations

import csv
import io

from flask import Response, abort, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from ...authn.gate import login_required
from ...authz.access import Access, conditions, invoice_review, member_review
from ...authz.enforce import authorize
from ...authz.scope import live_invoices_of, organization_in_my_orgs_or_404
from ...db import get_db
from ...invoicing import csv_safe
from ...models import Invoice, Membership, Organization, User
from ...path_ids import path_id_or_404
from .common import bp, member_or_404

CSV_COLUMNS = ["member", "email", "role", "action", "answer", "fresh password", "why"]


def _invoice_or_404(organization: Organization, public_id: str) -> Invoice:
    """An invoice of *this* organization; any other id is the same 404 as a missing one."""
    path_id_or_404("invoice", public_id)
    invoice = get_db().scalar(
        live_invoices_of(organization.id).where(Invoice.public_id == public_id)
    )
    if invoice is None:
        abort(404)
    return invoice


def _answer(row: Access) -> str:
    return "depends" if row.allowed is None else "yes" if row.allowed else "no"


def _csv(rows: list[Access], filename: str) -> Response:
    buffer = io.StringIO()
    buffer.write("\ufeff")  # UTF-8 for spreadsheets
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([
            csv_safe(row.name), csv_safe(row.email), csv_safe(row.role), row.action,
            _answer(row), "yes" if row.needs_fresh_password else "", csv_safe(row.reason),
        ])  # fmt: skip
    response = Response(buffer.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("/<slug>/access")
@login_required
def access(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)  # scope: 404, never 403
    authorize("audit.read", organization)  # policy: owners and admins
    db = get_db()
    invoice_id, member_id = request.args.get("invoice", ""), request.args.get("member", "")
    subject, rows = None, None
    if invoice_id:
        invoice = _invoice_or_404(organization, invoice_id)
        subject, rows = f"invoice {invoice.public_id}", invoice_review(db, organization, invoice)
        filename = f"access-{organization.slug}-{invoice.public_id}.csv"
    elif member_id:
        if not member_id.isdigit():
            abort(404)
        membership = member_or_404(organization, int(member_id))
        rows = member_review(db, organization, membership.user_id)
        subject = f"member {membership.user.display_name}"
        filename = f"access-{organization.slug}-member-{membership.user_id}.csv"
    if rows is not None and request.args.get("format") == "csv":
        return _csv(rows, filename)
    recent = db.scalars(
        live_invoices_of(organization.id).order_by(Invoice.created_at.desc()).limit(20)
    ).all()
    return render_template(
        "orgs/access.html",
        organization=organization,
        subject=subject,
        rows=rows,
        conditions=conditions(organization),
        answer=_answer,
        invoice_id=invoice_id,
        member_id=member_id,
        recent=recent,
        people=db.execute(
            select(User.id, User.display_name)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.organization_id == organization.id)
            .order_by(User.display_name, User.id)
        ).all(),
    )
