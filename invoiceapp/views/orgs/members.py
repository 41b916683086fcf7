"""The members page: the list, role changes, removals and members' API tokens.

Flash messages name no people and no organizations: they travel in a readable cookie.
"""

from __future__ import annotations

from flask import abort, flash, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from ...audit import record_audit
from ...authn.access_tokens import revoke_access_token
from ...authn.gate import login_required
from ...authz.enforce import authorize
from ...authz.policy import ROLES
from ...authz.roles import custom_role_or_none, custom_roles_of
from ...authz.scope import organization_in_my_orgs_or_404
from ...db import get_db, utcnow
from ...models import Invitation, Membership, Organization, PersonalAccessToken, Plan, User
from ...organizations import (
    FREE_PLAN_MEMBER_LIMIT,
    MembershipChanged,
    remove_membership,
    seats_in_use,
    set_role,
)
from ...path_ids import path_id_or_404
from ...principal import require_principal
from .common import bp, lock_and_recheck, member_or_404, to_page
from .forms import (
    ASSIGNABLE_ROLES,
    InviteForm,
    RoleForm,
    new_transfer_form,
    role_choices,
    with_roles,
)

CHANGED_MEANWHILE = (
    "Someone changed this organization's members or roles while you were deciding, so "
    "nothing was done. Here is the list as it is now; try again if it still makes sense."
)


CHOOSE_A_ROLE = "Choose one of the roles offered: member, admin or one of this organization's own."


def still_a_role(organization: Organization, role: str) -> None:
    """Inside the organization's lock: a custom role handed out must still exist (deleting
    one takes the same lock and refuses while anyone holds it). MembershipChanged if not."""
    if role in ASSIGNABLE_ROLES:
        return
    if custom_role_or_none(get_db(), organization.id, role) is None:
        raise MembershipChanged(f"role {role} was deleted meanwhile")


def changed_meanwhile(organization: Organization) -> ResponseReturnValue:
    """The 409 for a request that lost a race: rolled back, nothing half-written."""
    get_db().rollback()
    return render_members(organization, problem=CHANGED_MEANWHILE, status=409)


def render_members(
    organization: Organization,
    *,
    invite_form: InviteForm | None = None,
    problem: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    db = get_db()
    members = db.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.organization_id == organization.id)
        .order_by(Membership.created_at, Membership.id)
    ).all()
    tokens = _live_tokens(organization)
    invitations = db.scalars(
        select(Invitation)
        .where(
            Invitation.organization_id == organization.id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .order_by(Invitation.created_at, Invitation.id)
    ).all()
    custom_roles = custom_roles_of(db, organization.id)
    html = render_template(
        "orgs/members.html",
        organization=organization,
        members=members,
        invitations=invitations,
        tokens=tokens,
        invite_form=with_roles(invite_form or InviteForm(formdata=None), custom_roles),
        transfer_form=new_transfer_form(organization),
        role_choices=role_choices(custom_roles),
        custom_roles={role.key: role for role in custom_roles},
        view_as_roles=[*ROLES, *(role.key for role in custom_roles)],
        seats=seats_in_use(db, organization.id),
        limit=FREE_PLAN_MEMBER_LIMIT if organization.plan == Plan.FREE else None,
        problem=problem,
        me=require_principal().user.id,
        now=utcnow(),
    )
    return html, status


def _live_tokens(organization: Organization) -> dict[int, list[PersonalAccessToken]]:
    """Members' API tokens that still work here, by user id (the page shows only those
    the viewer may revoke: the template asks can(), like every other button)."""
    rows = get_db().scalars(
        select(PersonalAccessToken)
        .where(
            PersonalAccessToken.organization_id == organization.id,
            PersonalAccessToken.revoked_at.is_(None),
            PersonalAccessToken.expires_at > utcnow(),
        )
        .order_by(PersonalAccessToken.created_at, PersonalAccessToken.id)
    )
    tokens: dict[int, list[PersonalAccessToken]] = {}
    for token in rows:
        tokens.setdefault(token.user_id, []).append(token)
    return tokens


@bp.get("/<slug>/members")
@login_required
def members(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    authorize("member.read", organization)
    return render_members(organization)


@bp.post("/<slug>/members/<int(max=2147483647):user_id>/role")
@login_required
def change_role(slug: str, user_id: int) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    membership = member_or_404(organization, user_id)
    new_role = request.form.get("role", "")
    # The policy refuses "owner", the owner's own membership and yourself (403).
    authorize("member.change_role", membership, role=new_role)
    form = with_roles(RoleForm(), custom_roles_of(get_db(), organization.id))
    if not form.validate():
        return render_members(organization, problem=CHOOSE_A_ROLE, status=422)
    old_role = membership.role
    if old_role == new_role:
        flash("Nothing changed: that is already their role.", "info")
        return to_page("orgs.members", slug=organization.slug)
    db = get_db()
    try:
        lock_and_recheck(organization, membership)
        still_a_role(organization, new_role)  # not deleted since the form was read
        set_role(db, membership, from_role=old_role, to_role=new_role)
        db.commit()
    except MembershipChanged:
        return changed_meanwhile(organization)
    record_audit(
        "member.change_role",
        organization_id=organization.id,
        resource_id=f"membership:{user_id}",
        reason=f"role {old_role} -> {new_role}",
    )
    flash("Role changed. It applies from their very next request.", "success")
    return to_page("orgs.members", slug=organization.slug)


@bp.post("/<slug>/members/<int(max=2147483647):user_id>/remove")
@login_required
def remove_member(slug: str, user_id: int) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    membership = member_or_404(organization, user_id)
    authorize("member.remove", membership)  # admins: plain members only; never the owner
    db = get_db()
    role = membership.role
    try:
        lock_and_recheck(organization, membership)
        # Their browsers and their API tokens stop working in this organization at once.
        remove_membership(db, membership, role=role)
        db.commit()
    except MembershipChanged:
        return changed_meanwhile(organization)
    record_audit(
        "member.remove",
        organization_id=organization.id,
        resource_id=f"membership:{user_id}",
        reason=f"removed a {role}",
    )
    flash("Member removed. They lost access at once, API tokens included.", "success")
    return to_page("orgs.members", slug=organization.slug)


def _member_token_or_404(membership: Membership, public_id: str) -> PersonalAccessToken:
    """A live token of this member for this organization; anything else is a 404."""
    path_id_or_404("access_token", public_id)  # a malformed id never reaches the database
    token = get_db().scalar(
        select(PersonalAccessToken).where(
            PersonalAccessToken.public_id == public_id,
            PersonalAccessToken.user_id == membership.user_id,
            PersonalAccessToken.organization_id == membership.organization_id,
            PersonalAccessToken.revoked_at.is_(None),
        )
    )
    if token is None:
        abort(404)
    return token


@bp.post("/<slug>/members/<int(max=2147483647):user_id>/tokens/<public_id>/revoke")
@login_required
def revoke_member_token(slug: str, user_id: int, public_id: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    membership = member_or_404(organization, user_id)
    token = _member_token_or_404(membership, public_id)
    # Whoever may remove this member may cut off their tokens, which removing them would
    # do anyway: owners, and admins for plain members. Your own: /account/tokens.
    authorize("member.remove", membership)
    revoke_access_token(token)
    get_db().commit()
    record_audit(
        "member.token.revoke",
        organization_id=organization.id,
        resource_id=f"token:{token.public_id}",
        reason=f"revoked an API token of membership:{user_id}",
    )
    flash("Token revoked. It stops working on its very next request.", "success")
    return to_page("orgs.members", slug=organization.slug)
