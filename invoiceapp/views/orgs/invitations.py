"""Inviting people: send, revoke, resend (accepting one is in invoiceapp.views.invitations)."""

from __future__ import annotations

from flask import abort, current_app, flash, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from ...audit import record_audit
from ...authn.gate import login_required
from ...authz.enforce import authorize
from ...authz.org_security import invitation_domain_refusal
from ...authz.roles import custom_roles_of, role_title
from ...authz.scope import organization_in_my_orgs_or_404
from ...db import get_db
from ...mail import absolute_url, send_mail
from ...models import Invitation, Organization, Role
from ...organizations import (
    FREE_PLAN_MEMBER_LIMIT,
    MembershipChanged,
    has_room_for_invitation,
    is_member_by_email,
    issue_invitation_token,
    new_invitation,
    revoke_invitation,
)
from ...path_ids import path_id_or_404
from ...principal import require_principal
from .common import bp, lock_and_recheck, one_line, to_page
from .forms import InviteForm, with_roles
from .members import changed_meanwhile, render_members, still_a_role

FULL = (
    f"The free plan allows {FREE_PLAN_MEMBER_LIMIT} members, pending invitations included. "
    "Revoke an invitation, remove a member or upgrade to pro first."
)


def _invitation_or_404(organization: Organization, public_id: str) -> Invitation:
    """A pending invitation of this organization (expired ones can still be resent)."""
    path_id_or_404("invitation", public_id)
    invitation = get_db().scalar(
        select(Invitation).where(
            Invitation.organization_id == organization.id,
            Invitation.public_id == public_id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
    )
    if invitation is None:
        abort(404)
    return invitation


def _expires_in_words(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


def _send_invitation(organization: Organization, invitation: Invitation, raw_token: str) -> None:
    lifetime = current_app.config["INVITATION_SECONDS"]
    inviter = require_principal().user
    send_mail(
        invitation.email,
        one_line(f"You are invited to join {organization.name} on InvoiceApp"),
        "invitation",
        accept_url=absolute_url(url_for("invitations.show", token=raw_token)),
        organization_name=organization.name,
        inviter_name=inviter.display_name,
        role=role_title(get_db(), organization.id, invitation.role),
        expires_in=_expires_in_words(lifetime),
    )


@bp.post("/<slug>/invitations")
@login_required
def invite(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    # The role asked for is an input: an admin may not invite an owner.
    authorize("member.invite", organization, role=request.form.get("role", ""))
    form = with_roles(InviteForm(), custom_roles_of(get_db(), organization.id))
    if not form.validate():
        return render_members(organization, invite_form=form, status=422)
    email, role = form.email.data or "", form.role.data or Role.MEMBER.value
    outside = invitation_domain_refusal(organization, email)  # the security policy's list
    if outside is not None:
        form.email.errors = [outside.reason]
        return render_members(organization, invite_form=form, status=422)

    db = get_db()
    try:
        organization = lock_and_recheck(organization)  # the plan as it is now, not as read
        still_a_role(organization, role)
    except MembershipChanged:
        return changed_meanwhile(organization)
    if is_member_by_email(db, organization.id, email):
        db.rollback()
        form.email.errors = ["That address already belongs to a member of this organization."]
        return render_members(organization, invite_form=form, status=409)
    if not has_room_for_invitation(db, organization, email):
        db.rollback()
        return render_members(organization, invite_form=form, problem=FULL, status=409)
    invitation, raw = new_invitation(
        db,
        organization,
        email=email,
        role=role,
        invited_by=require_principal().user,
        lifetime_seconds=current_app.config["INVITATION_SECONDS"],
    )
    db.commit()  # the link in the mail works as soon as it arrives
    _send_invitation(organization, invitation, raw)
    record_audit(
        "member.invite",
        organization_id=organization.id,
        resource_id=f"invitation:{invitation.public_id}",
        reason=f"invited as {role}",
    )
    flash("Invitation sent.", "success")
    return to_page("orgs.members", slug=organization.slug)


@bp.post("/<slug>/invitations/<public_id>/revoke")
@login_required
def revoke(slug: str, public_id: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    invitation = _invitation_or_404(organization, public_id)
    authorize("member.invite", organization, role=invitation.role)
    db = get_db()
    if revoke_invitation(db, invitation):
        db.commit()
        record_audit(
            "member.invite.revoke",
            organization_id=organization.id,
            resource_id=f"invitation:{invitation.public_id}",
            reason=f"revoked an invitation as {invitation.role}",
        )
    flash("Invitation revoked. Its link no longer works.", "success")
    return to_page("orgs.members", slug=organization.slug)


@bp.post("/<slug>/invitations/<public_id>/resend")
@login_required
def resend(slug: str, public_id: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    invitation = _invitation_or_404(organization, public_id)
    authorize("member.invite", organization, role=invitation.role)
    db = get_db()
    try:
        organization = lock_and_recheck(organization)
    except MembershipChanged:
        return changed_meanwhile(organization)
    # An expired invitation gave up its seat; someone may have taken it since.
    if not has_room_for_invitation(db, organization, invitation.email):
        db.rollback()
        return render_members(organization, problem=FULL, status=409)
    # A new token: the old link stops working, the new one gets a new expiry.
    raw = issue_invitation_token(invitation, current_app.config["INVITATION_SECONDS"])
    db.commit()
    _send_invitation(organization, invitation, raw)
    record_audit(
        "member.invite.resend",
        organization_id=organization.id,
        resource_id=f"invitation:{invitation.public_id}",
        reason=f"sent a new link, as {invitation.role}",
    )
    flash("Invitation sent again with a new link.", "success")
    return to_page("orgs.members", slug=organization.slug)
