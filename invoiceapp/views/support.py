"""Support access pages: the engineer's (/support) and the owner's (/orgs/<slug>/support).

The mechanics are in invoiceapp.support_access, the rules in the policy table
(org.support.manage, org.support.approve; SUPPORT_REFUSED). These views read the form,
scope the lookups (someone else's request is a 404, like one that never existed) and ask.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import ColumnElement, select

from ..authn.gate import login_required
from ..authn.sessions import is_fresh
from ..authz.enforce import PermissionDenied, ReauthenticationRequired, authorize
from ..authz.policy import Decision
from ..authz.roles import custom_role_or_none, role_title
from ..authz.scope import organization_in_my_orgs_or_404
from ..db import get_db, utcnow
from ..models import CustomRole, Organization, Role, SupportGrant, User
from ..principal import Principal, require_principal
from ..support_access import (
    MAX_HOURS,
    REASON_MAX,
    REASON_MIN,
    SUPPORT_READ_ONLY,
    SupportRequestError,
    approve,
    deny,
    end,
    expire_due,
    request_access,
)

bp = Blueprint("support", __name__)

# The rule a signed-in non-staff user meets at /support (the 403 page names it).
STAFF_RULE = "staff only"


def _staff_or_403(principal: Principal) -> None:
    """Only platform support staff ask for access; the flag is set from the command line."""
    if not principal.user.is_staff or principal.token_scope is not None:
        raise PermissionDenied(
            Decision(
                False,
                "support.request",
                "Only platform support staff can ask organizations for support access",
                missing="the staff flag, set by an operator with flask staff grant",
                rule=STAFF_RULE,
            )
        )


# --- The engineer's page ----------------------------------------------------------------------


@bp.get("/support")
@login_required  # authentication gate: 401 / sign-in
def index() -> ResponseReturnValue:
    principal = require_principal()
    _staff_or_403(principal)  # authorization: 403
    return _engineer_page(principal)


@bp.post("/support")
@login_required
def ask() -> ResponseReturnValue:
    principal = require_principal()
    _staff_or_403(principal)
    # Asking names a customer and a reason that owner will read: fresh proof first, so a
    # stolen session cannot send requests in the engineer's name.
    if not is_fresh(principal.session):
        raise ReauthenticationRequired(url_for("support.index"))
    slug = request.form.get("organization", "").strip()
    reason = " ".join(request.form.get("reason", "").split())
    errors: dict[str, str] = {}
    organization = get_db().scalar(select(Organization).where(Organization.slug == slug))
    if organization is None:
        errors["organization"] = "There is no organization with that slug: check the ticket."
    if not REASON_MIN <= len(reason) <= REASON_MAX:
        errors["reason"] = (
            f"Say why you need access in {REASON_MIN} to {REASON_MAX} characters: "
            "the owner reads it before deciding."
        )
    if errors or organization is None:
        return _engineer_page(principal, errors=errors, slug=slug, reason=reason), 422
    try:
        request_access(get_db(), principal.user, organization, reason)
    except SupportRequestError as error:
        errors["organization"] = str(error)
        return _engineer_page(principal, errors=errors, slug=slug, reason=reason), 422
    flash("Request sent. The organization's owner decides; nothing is open to you until then.",
          "success")  # fmt: skip
    return redirect(url_for("support.index"), code=303)


@bp.post("/support/<int(max=2147483647):grant_id>/end")
@login_required
def end_mine(grant_id: int) -> ResponseReturnValue:
    principal = require_principal()
    grant = _grant_or_404(grant_id, SupportGrant.staff_user_id == principal.user.id)
    if end(get_db(), grant, principal.user, why=f"ended by {principal.user.display_name}"):
        flash("Support access ended.", "success")
    else:
        flash("That request or grant had already ended.", "info")
    return redirect(url_for("support.index"), code=303)


def _engineer_page(
    principal: Principal, *, errors: dict[str, str] | None = None, slug: str = "",
    reason: str = "",
) -> str:  # fmt: skip
    grants = (
        get_db()
        .scalars(
            select(SupportGrant)
            .where(SupportGrant.staff_user_id == principal.user.id)
            .order_by(SupportGrant.requested_at.desc(), SupportGrant.id.desc())
            .limit(100)
        )
        .all()
    )
    return render_template(
        "support/index.html",
        grants=grants,
        now=utcnow(),
        errors=errors or {},
        slug=slug,
        reason=reason,
        reason_min=REASON_MIN,
        reason_max=REASON_MAX,
    )


# --- The owner's page -------------------------------------------------------------------------


@bp.get("/orgs/<slug>/support")
@login_required
def org_page(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)  # scope: 404, never 403
    authorize("org.support.manage", organization)  # owner only: 403
    expire_due(get_db(), organization_id=organization.id)  # ends, records and mails once
    return _owner_page(organization)


@bp.post("/orgs/<slug>/support/<int(max=2147483647):grant_id>/approve")
@login_required
def approve_request(slug: str, grant_id: int) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    grant = _grant_or_404(grant_id, SupportGrant.organization_id == organization.id)
    authorize("org.support.approve", organization)  # owner, elevated: 403 / re-authenticate
    role = request.form.get("role", SUPPORT_READ_ONLY).strip() or SUPPORT_READ_ONLY
    hours_text = request.form.get("hours", "1").strip()
    errors: dict[str, str] = {}
    if not _is_a_support_role(organization, role):
        errors["role"] = "Choose read-only, member, admin or one of your own roles."
    if not hours_text.isdigit() or not 1 <= int(hours_text) <= MAX_HOURS:
        errors["hours"] = f"Choose between 1 and {MAX_HOURS} hours."
    if errors:
        return _owner_page(organization, errors=errors), 422
    if approve(get_db(), grant, require_principal().user, role, int(hours_text)):
        flash("Support access approved. You can end it here at any moment.", "success")
    else:
        flash("That request is no longer waiting for an answer.", "info")
    return redirect(url_for("support.org_page", slug=organization.slug), code=303)


@bp.post("/orgs/<slug>/support/<int(max=2147483647):grant_id>/deny")
@login_required
def deny_request(slug: str, grant_id: int) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    grant = _grant_or_404(grant_id, SupportGrant.organization_id == organization.id)
    authorize("org.support.approve", organization)
    if deny(get_db(), grant, require_principal().user):
        flash("Request denied.", "success")
    else:
        flash("That request is no longer waiting for an answer.", "info")
    return redirect(url_for("support.org_page", slug=organization.slug), code=303)


@bp.post("/orgs/<slug>/support/<int(max=2147483647):grant_id>/end")
@login_required
def end_for_org(slug: str, grant_id: int) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    grant = _grant_or_404(grant_id, SupportGrant.organization_id == organization.id)
    authorize("org.support.manage", organization)  # no elevation: cutting access never waits
    user = require_principal().user
    if end(get_db(), grant, user, why=f"ended by {user.display_name}, an owner"):
        flash("Support access ended: it stops on the engineer's next request.", "success")
    else:
        flash("That request or grant had already ended.", "info")
    return redirect(url_for("support.org_page", slug=organization.slug), code=303)


def _owner_page(organization: Organization, *, errors: dict[str, str] | None = None) -> str:
    db = get_db()
    rows = db.execute(
        select(SupportGrant, User)
        .join(User, User.id == SupportGrant.staff_user_id)
        .where(SupportGrant.organization_id == organization.id)
        .order_by(SupportGrant.requested_at.desc(), SupportGrant.id.desc())
        .limit(200)
    ).all()
    custom = _custom_roles(organization)
    return render_template(
        "support/org.html",
        organization=organization,
        current="support",
        pending=[(g, u) for g, u in rows if g.state == "requested"],
        others=[(g, u) for g, u in rows if g.state != "requested"],
        now=utcnow(),
        errors=errors or {},
        custom_roles=custom,
        max_hours=MAX_HOURS,
        role_title=lambda key: _role_words(organization, key),
    )


def _custom_roles(organization: Organization) -> list[tuple[str, str]]:
    return [
        (role.key, role.name)
        for role in get_db().scalars(
            select(CustomRole)
            .where(CustomRole.organization_id == organization.id)
            .order_by(CustomRole.name)
        )
    ]


def _role_words(organization: Organization, key: str) -> str:
    if key == SUPPORT_READ_ONLY:
        return "read-only (invoices)"
    return role_title(get_db(), organization.id, key)


def _is_a_support_role(organization: Organization, key: str) -> bool:
    """Read-only, member, admin or the organization's own role: never the owner."""
    if key in (SUPPORT_READ_ONLY, Role.MEMBER.value, Role.ADMIN.value):
        return True
    return custom_role_or_none(get_db(), organization.id, key) is not None


def _grant_or_404(grant_id: int, belongs: ColumnElement[bool]) -> SupportGrant:
    """A grant of this organization (or this engineer); anything else is the same 404."""
    grant = get_db().scalar(select(SupportGrant).where(SupportGrant.id == grant_id, belongs))
    if grant is None:
        abort(404)
    return grant
