"""Billing: the plan, read by owners and admins, changed by the owner."""

from __future__ import annotations

from flask import flash, render_template
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from ...audit import record_audit
from ...authn.gate import login_required
from ...authz.enforce import authorize
from ...authz.scope import organization_in_my_orgs_or_404
from ...db import get_db
from ...models import AuditEvent, Organization, Plan
from ...organizations import FREE_PLAN_MEMBER_LIMIT, MembershipChanged, fits_free_plan, seats_in_use
from .common import bp, lock_and_recheck, to_page
from .forms import BillingForm
from .members import changed_meanwhile


def _render_billing(
    organization: Organization,
    form: BillingForm | None = None,
    *,
    problem: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    db = get_db()
    last_change = db.scalar(
        select(AuditEvent)
        .where(
            AuditEvent.organization_id == organization.id,
            AuditEvent.action == "org.billing.update",
            AuditEvent.decision == "allowed",
        )
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        .limit(1)
    )
    html = render_template(
        "orgs/billing.html",
        organization=organization,
        form=form or BillingForm(formdata=None, plan=organization.plan),
        last_change=last_change,
        seats=seats_in_use(db, organization.id),
        limit=FREE_PLAN_MEMBER_LIMIT,
        problem=problem,
    )
    return html, status


@bp.get("/<slug>/billing")
@login_required
def billing(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    authorize("org.billing.read", organization)
    return _render_billing(organization)


@bp.post("/<slug>/billing")
@login_required
def change_plan(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    authorize("org.billing.update", organization)  # owner, with a fresh password
    form = BillingForm()
    if not form.validate():
        return _render_billing(organization, form, status=422)
    old_plan, new_plan = organization.plan, form.plan.data or ""
    if old_plan == new_plan:
        flash("Nothing changed: that is already the plan.", "info")
        return to_page("orgs.billing", slug=organization.slug)
    db = get_db()
    try:
        organization = lock_and_recheck(organization)  # you are still the owner
    except MembershipChanged:
        return changed_meanwhile(organization)
    old_plan = organization.plan  # as it is now: another change may have landed meanwhile
    if new_plan == Plan.FREE and not fits_free_plan(db, organization.id):
        db.rollback()
        problem = (
            f"The free plan allows {FREE_PLAN_MEMBER_LIMIT} members, pending invitations "
            "included. Remove members or revoke invitations before downgrading."
        )
        return _render_billing(organization, form, problem=problem, status=409)
    organization.plan = new_plan
    db.commit()
    record_audit(
        "org.billing.update",
        organization_id=organization.id,
        resource_id=organization.slug,
        reason=f"plan {old_plan} -> {new_plan}",
    )
    flash("Plan changed.", "success")
    return to_page("orgs.billing", slug=organization.slug)
