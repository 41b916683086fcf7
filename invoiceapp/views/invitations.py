"""Accepting an invitation: the mailed link, /invitations/<token>.

Authentication first: an anonymous visit goes to /sign-in?next=/invitations/<token>, so
the invitee can sign up or sign in and come back. Then the link itself is checked, and
then whether *this* principal may use it: the signed-in address must be the invited one
and verified. The token alone is not enough, because mail gets forwarded.

Every unusable link (malformed, unknown, expired, revoked, already accepted) gets the
same page and status, so the page is no oracle for which tokens once existed.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from ..audit import DENIED, record_audit
from ..authn.gate import login_required
from ..authz.org_security import invitation_domain_refusal
from ..authz.roles import role_title
from ..db import get_db
from ..models import Invitation, Membership
from ..organizations import (
    FREE_PLAN_MEMBER_LIMIT,
    claim_invitation,
    find_usable_invitation,
    has_room_for_member,
    lock_organization,
    membership_of,
    revoke_invitation,
)
from ..principal import require_principal

bp = Blueprint("invitations", __name__, url_prefix="/invitations")

WRONG_ADDRESS = "wrong_address"
UNVERIFIED = "unverified"
OUTSIDE_DOMAINS = "outside_domains"
# What the audit log says about each refusal.
_REFUSED_BECAUSE = {
    WRONG_ADDRESS: "signed in with another address than the invited one",
    UNVERIFIED: "the invited address is not verified yet",
    OUTSIDE_DOMAINS: "the address is outside the organization's invitation domains",
}


def _invalid() -> ResponseReturnValue:
    return render_template("invitations/invalid.html"), 404


def _why_not(invitation: Invitation) -> str | None:
    """Why the signed-in person may not accept, or None when they may."""
    user = require_principal().user
    if user.email != invitation.email:
        return WRONG_ADDRESS
    if not user.email_verified:
        return UNVERIFIED
    # The security policy may have narrowed its domains since the invitation was sent.
    if invitation_domain_refusal(invitation.organization, invitation.email) is not None:
        return OUTSIDE_DOMAINS
    return None


def _show(invitation: Invitation, problem: str | None, status: int) -> ResponseReturnValue:
    role = role_title(get_db(), invitation.organization_id, invitation.role)
    html = render_template(
        "invitations/show.html", invitation=invitation, role=role, problem=problem
    )
    return html, status


@bp.get("/<path:token>")
@login_required
def show(token: str) -> ResponseReturnValue:
    invitation = find_usable_invitation(get_db(), token)
    if invitation is None:
        return _invalid()
    return _show(invitation, _why_not(invitation), 200)


@bp.post("/<path:token>")
@login_required
def accept(token: str) -> ResponseReturnValue:
    db = get_db()
    invitation = find_usable_invitation(db, token)
    if invitation is None:
        return _invalid()
    problem = _why_not(invitation)
    if problem is not None:
        record_audit(
            "member.accept",
            organization_id=invitation.organization_id,
            resource_id=f"invitation:{invitation.public_id}",
            decision=DENIED,
            status=403,
            reason=_REFUSED_BECAUSE[problem],
        )
        return _show(invitation, problem, 403)

    user = require_principal().user
    # Lock, then re-read: the plan may have changed since the invitation was looked up.
    organization = lock_organization(db, invitation.organization)
    slug = organization.slug
    if membership_of(db, organization.id, user.id) is not None:
        # Already in (another invitation, a moment ago): this one has nothing left to do.
        revoke_invitation(db, invitation)
        db.commit()
        flash("You are already a member of this organization.", "info")
        return redirect(url_for("orgs.show", slug=slug), code=303)
    if not has_room_for_member(db, organization):
        db.rollback()
        record_audit(
            "member.accept",
            organization_id=organization.id,
            resource_id=f"invitation:{invitation.public_id}",
            decision=DENIED,
            status=409,
            reason=f"the free plan's limit of {FREE_PLAN_MEMBER_LIMIT} members is reached",
        )
        return _show(invitation, "full", 409)
    if not claim_invitation(db, invitation):
        db.rollback()  # accepted or revoked by another request a moment ago
        return _invalid()
    db.add(Membership(user_id=user.id, organization_id=organization.id, role=invitation.role))
    try:
        db.commit()
    except IntegrityError:
        # The membership's unique constraint: a simultaneous accept got there first.
        db.rollback()
        flash("You are already a member of this organization.", "info")
        return redirect(url_for("orgs.show", slug=slug), code=303)
    record_audit(
        "member.accept",
        organization_id=organization.id,
        resource_id=f"membership:{user.id}",
        reason=f"joined as {invitation.role} by invitation {invitation.public_id}",
    )
    flash("Welcome! You joined the organization.", "success")
    return redirect(url_for("orgs.show", slug=slug), code=303)


@bp.after_request
def _token_pages_are_not_kept(response: Response) -> Response:
    """The URL holds a live token: no cache keeps the page, no Referer carries it away.

    Referers go to this site only: over HTTPS the CSRF check needs one on the accept post.
    """
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    return response
