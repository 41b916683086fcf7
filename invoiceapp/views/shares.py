"""Sharing one customer's invoices with a person outside the organization.

- /orgs/<slug>/shares                 owner, admin (invoice.share): list, create, revoke
- /shares/<token>                     the mailed link: GET shows a button, POST accepts
- /shared                             the guest's own list of what is shared with them

The share is an input to the same can(): the guest holds no role, so every other page of
the organization stays the 404 a stranger gets, and the shared invoices answer from the
share's access (invoiceapp.authz.policy.SHARE_ACCESS). Accepting follows the invitation
flow (views/invitations.py): the token alone is not enough, the signed-in, verified
address must be the one the share was sent to.
"""

from __future__ import annotations

import math

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select, update
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response
from wtforms import IntegerField, RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # new in WTForms 3.3; types-WTForms is 3.2
from wtforms.validators import DataRequired, InputRequired, NumberRange

from ..audit import DENIED, record_audit
from ..authn.emails import MAX_EMAIL_LENGTH, valid_new_email
from ..authn.gate import login_required
from ..authz.enforce import authorize
from ..authz.scope import (
    NEWEST_FIRST,
    live_invoices_of,
    organization_in_my_orgs_or_404,
    shared_with,
)
from ..db import get_db, rows_changed, utcnow
from ..forms import Form
from ..mail import absolute_url, send_mail
from ..models import Invoice, Organization, Share, ShareAccess
from ..organizations import is_member_by_email
from ..path_ids import path_id_or_404
from ..principal import require_principal
from ..shares import (
    DEFAULT_SHARE_DAYS,
    MAX_SHARE_DAYS,
    MIN_SHARE_DAYS,
    claim_share,
    find_usable_share,
    new_share,
    revoke_share,
    share_state,
)
from .paging import page_number

bp = Blueprint("shares", __name__)

ACCESS_WORDS = {
    ShareAccess.READ.value: "Read only",
    ShareAccess.READ_MARK_PAID.value: "Read and mark paid",
}
ACCESS_CHOICES = [SelectChoice(value, label) for value, label in ACCESS_WORDS.items()]


class ShareForm(Form):
    email = StringField(
        "Their email address",
        validators=[DataRequired("Enter the address to share with."), valid_new_email],
        render_kw={"type": "email", "autocomplete": "off", "maxlength": MAX_EMAIL_LENGTH},
    )
    # Choices are this organization's customers, set per request; checked in the view so
    # that the message says what to do rather than "Not a valid choice".
    customer = SelectField("Customer", choices=[], validate_choice=False)
    access = RadioField(
        "They may",
        choices=ACCESS_CHOICES,
        default=ShareAccess.READ.value,
        validators=[InputRequired("Choose what they may do.")],
    )
    expires_days = IntegerField(
        "Ends after (days)",
        default=DEFAULT_SHARE_DAYS,
        validators=[
            InputRequired("Enter for how many days the share lasts."),
            NumberRange(
                MIN_SHARE_DAYS,
                MAX_SHARE_DAYS,
                f"A share lasts from {MIN_SHARE_DAYS} to {MAX_SHARE_DAYS} days.",
            ),
        ],
        render_kw={"inputmode": "numeric", "min": MIN_SHARE_DAYS, "max": MAX_SHARE_DAYS},
    )


def _customers(organization: Organization) -> list[str]:
    """The customers this organization has live invoices for: what can be shared."""
    rows = get_db().scalars(
        live_invoices_of(organization.id)
        .with_only_columns(Invoice.customer)
        .distinct()
        .order_by(Invoice.customer)
    )
    return list(rows)


def _form(organization: Organization, *, posted: bool) -> ShareForm:
    form = ShareForm() if posted else ShareForm(formdata=None)
    customers = [SelectChoice(name, name) for name in _customers(organization)]
    form.customer.choices = [SelectChoice("", "Choose a customer"), *customers]
    return form


def _render(organization: Organization, form: ShareForm, status: int = 200) -> ResponseReturnValue:
    shares = get_db().scalars(
        select(Share)
        .where(Share.organization_id == organization.id)
        .order_by(Share.created_at.desc(), Share.id.desc())
    )
    now = utcnow()
    rows = [(share, share_state(share, now)) for share in shares]
    html = render_template(
        "orgs/shares.html", organization=organization, form=form, rows=rows, current="shares"
    )
    return html, status


@bp.get("/orgs/<slug>/shares")
@login_required
def index(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)  # scope: 404
    authorize("invoice.share", organization)  # policy: 403
    return _render(organization, _form(organization, posted=False))


@bp.post("/orgs/<slug>/shares")
@login_required
def create(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    authorize("invoice.share", organization)
    form = _form(organization, posted=True)
    valid = form.validate()
    if form.customer.data not in _customers(organization):
        form.customer.errors = ["Choose one of this organization's customers."]
        valid = False
    if not valid:
        return _render(organization, form, 422)
    email, customer = form.email.data or "", form.customer.data or ""
    db = get_db()
    if is_member_by_email(db, organization.id, email):
        form.email.errors = [
            "That address belongs to a member of this organization: their role already "
            "decides what they see, and a share would add nothing."
        ]
        return _render(organization, form, 409)
    replaced = _replace_earlier(email, organization, customer)
    user = require_principal().user
    share, raw = new_share(
        db,
        organization,
        email=email,
        customer=customer,
        access=form.access.data or ShareAccess.READ.value,
        days=form.expires_days.data or DEFAULT_SHARE_DAYS,
        shared_by=user,
    )
    db.commit()  # the link in the mail works as soon as it arrives
    send_mail(
        email,
        # One line whatever the name holds: a subject is a mail header.
        " ".join(f"{user.display_name} shared invoices with you on InvoiceApp".split()),
        "share",
        accept_url=absolute_url(url_for("shares.show_link", token=raw)),
        sharer_name=user.display_name,
        organization_name=organization.name,
        customer=customer,
        access_words=ACCESS_WORDS[share.access].lower(),
        expires_on=share.expires_at.strftime("%Y-%m-%d"),
    )
    record_audit(
        "invoice.share",
        organization_id=organization.id,
        resource_id=f"share:{share.public_id}",
        reason=f"shared {share.access} until {share.expires_at:%Y-%m-%d}"
        + ("; it replaces the earlier share" if replaced else ""),
    )
    flash(f"Shared. We mailed {email} a link to accept it.", "success")
    return redirect(url_for("shares.index", slug=organization.slug), code=303)


def _replace_earlier(email: str, organization: Organization, customer: str) -> int:
    """One live share per address and customer: a new one (new access, new expiry) replaces
    the earlier, whose link and grant stop working. Returns how many it replaced."""
    return rows_changed(
        get_db(),
        update(Share)
        .where(
            Share.organization_id == organization.id,
            Share.email == email,
            Share.customer == customer,
            Share.revoked_at.is_(None),
            Share.expires_at > utcnow(),
        )
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False),
    )


@bp.post("/orgs/<slug>/shares/<share_id>/revoke")
@login_required
def revoke(slug: str, share_id: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)  # scope: 404
    authorize("invoice.share", organization)  # policy: 403, before saying whether it exists
    path_id_or_404("invitation", share_id)  # the same shape: secrets.token_hex(8)
    db = get_db()
    share = db.scalar(
        select(Share).where(Share.organization_id == organization.id, Share.public_id == share_id)
    )
    if share is None:
        raise NotFound()
    if revoke_share(db, share):
        db.commit()
        record_audit(
            "invoice.share.revoke",
            organization_id=organization.id,
            resource_id=f"share:{share.public_id}",
            reason="revoked; it stops at the guest's next request",
        )
        flash(f"The share with {share.email} was revoked.", "success")
    else:
        flash("That share was already revoked.", "info")
    return redirect(url_for("shares.index", slug=organization.slug), code=303)


# --- The mailed link ------------------------------------------------------------------

WRONG_ADDRESS, UNVERIFIED = "wrong_address", "unverified"


def _why_not(share: Share) -> str | None:
    user = require_principal().user
    if user.email != share.email:
        return WRONG_ADDRESS
    if not user.email_verified:
        return UNVERIFIED
    return None


def _invalid() -> ResponseReturnValue:
    return render_template("shares/invalid.html"), 404


@bp.get("/shares/<path:token>")
@login_required
def show_link(token: str) -> ResponseReturnValue:
    """Shows the share and one button. A GET never accepts (mail scanners follow links)."""
    share = find_usable_share(get_db(), token)
    if share is None:
        return _invalid()
    return render_template("shares/show.html", share=share, problem=_why_not(share))


@bp.post("/shares/<path:token>")
@login_required
def accept(token: str) -> ResponseReturnValue:
    db = get_db()
    share = find_usable_share(db, token)
    if share is None:
        return _invalid()
    problem = _why_not(share)
    if problem is not None:
        record_audit(
            "invoice.share.accept",
            organization_id=share.organization_id,
            resource_id=f"share:{share.public_id}",
            decision=DENIED,
            status=403,
            reason="signed in with another address than the one shared with"
            if problem == WRONG_ADDRESS
            else "the address shared with is not verified yet",
        )
        return render_template("shares/show.html", share=share, problem=problem), 403
    if not claim_share(db, share, require_principal().user):
        db.rollback()  # accepted or revoked by another request a moment ago
        return _invalid()
    db.commit()
    record_audit(
        "invoice.share.accept",
        organization_id=share.organization_id,
        resource_id=f"share:{share.public_id}",
        reason=f"accepted {share.access} until {share.expires_at:%Y-%m-%d}",
    )
    flash("Accepted. The invoices shared with you are listed below.", "success")
    return redirect(url_for("shares.shared"), code=303)


@bp.after_request
def _token_pages_are_not_kept(response: Response) -> Response:
    """The URL of /shares/<token> holds a live token: no cache keeps the page, no Referer
    carries it away (same-origin: the accept post needs one over HTTPS)."""
    if request.endpoint in ("shares.show_link", "shares.accept"):
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "same-origin"
    return response


# --- The guest's list ---------------------------------------------------------------------


@bp.get("/shared")
@login_required
def shared() -> ResponseReturnValue:
    """What is shared with me: each share, then its invoices, a page at a time. The rows
    come from the same SQL scope as the invoice pages, so nothing else can appear."""
    principal = require_principal()
    db = get_db()
    ids = sorted({grant.organization_id for grant in principal.grants})
    rows = db.execute(select(Organization.id, Organization.name).where(Organization.id.in_(ids)))
    names = {organization_id: name for organization_id, name in rows}
    query = select(Invoice).where(shared_with(principal), Invoice.deleted_at.is_(None))
    total = db.scalar(query.with_only_columns(func.count())) or 0
    per_page = current_app.config["INVOICES_PER_PAGE"]
    pages = max(1, math.ceil(total / per_page))
    page = min(page_number(), pages)
    invoices = db.scalars(
        query.order_by(Invoice.organization_id, Invoice.customer, *NEWEST_FIRST)
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return render_template(
        "shares/shared.html",
        grants=principal.grants,
        names=names,
        invoices=invoices,
        page=page,
        pages=pages,
        total=total,
    )
