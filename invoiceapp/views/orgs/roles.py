"""Custom roles: the organization's own roles, made by its owner from the policy's actions.

Reading the page is owner only (org.roles.read); creating, changing and deleting a role
is owner only with a fresh password (org.roles.update). Which actions are offered, and how
a custom role's actions are answered, is the policy's (invoiceapp.authz.policy); the rows
are kept by invoiceapp.authz.roles. A change applies to the role's members on their next
request, since every request reads the roles afresh.
"""

from __future__ import annotations

from flask import abort, flash, render_template, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from ...audit import record_audit
from ...authn.gate import login_required
from ...authz.enforce import ReauthenticationRequired, authorize
from ...authz.policy import CUSTOM_ROLE_COLUMN, GRANTABLE_ACTIONS, POLICY
from ...authz.roles import (
    RoleInUse,
    actions_problem,
    create_role,
    custom_role_or_none,
    custom_roles_of,
    delete_role,
    name_problem,
    update_role,
)
from ...authz.scope import organization_in_my_orgs_or_404
from ...db import get_db
from ...forms import add_error
from ...models import CustomRole, Membership, Organization
from ...organizations import MembershipChanged
from ...path_ids import path_id_or_404
from .common import bp, lock_and_recheck, to_page
from .forms import NEW_ROLE_DEFAULTS, CustomRoleForm
from .members import changed_meanwhile


def _role_or_404(organization: Organization, key: str) -> CustomRole:
    path_id_or_404("role", key)  # malformed (a NUL byte, say): the same 404 as missing
    role = custom_role_or_none(get_db(), organization.id, key)
    if role is None:
        abort(404)
    return role


def _authorize_change(organization: Organization) -> None:
    """Owner, elevated. After re-authenticating, back to the roles page (a GET)."""
    try:
        authorize("org.roles.update", organization)
    except ReauthenticationRequired as needed:
        page = url_for("orgs.roles", slug=organization.slug)
        raise ReauthenticationRequired(page, second_factor=needed.second_factor) from None


def _holders(organization: Organization) -> dict[str, int]:
    """How many members hold each role key here."""
    rows = get_db().execute(
        select(Membership.role, func.count())
        .where(Membership.organization_id == organization.id)
        .group_by(Membership.role)
    )
    return {role: count for role, count in rows}


def _render_roles(
    organization: Organization,
    *,
    new_form: CustomRoleForm | None = None,
    edited: tuple[str, CustomRoleForm] | None = None,
    problem: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    roles = custom_roles_of(get_db(), organization.id)
    forms = {
        role.key: CustomRoleForm(formdata=None, name=role.name, actions=role.action_list)
        for role in roles
    }
    if edited is not None:
        forms[edited[0]] = edited[1]
    html = render_template(
        "orgs/roles.html",
        organization=organization,
        roles=roles,
        forms=forms,
        edited=edited[0] if edited else None,
        new_form=new_form or CustomRoleForm(formdata=None, actions=NEW_ROLE_DEFAULTS),
        holders=_holders(organization),
        grantable=GRANTABLE_ACTIONS,
        rules={action: POLICY[action][CUSTOM_ROLE_COLUMN].value for action in GRANTABLE_ACTIONS},
        owner_only=[action for action in POLICY if action not in GRANTABLE_ACTIONS],
        problem=problem,
    )
    return html, status


def _valid(form: CustomRoleForm, organization: Organization, except_key: str = "") -> bool:
    """The form's own checks, then the name against the other roles, then the actions."""
    ok = form.validate()
    name = form.name.data or ""
    if ok:
        problem = name_problem(get_db(), organization.id, name, except_key=except_key)
        if problem:
            add_error(form.name, problem)
            ok = False
    problem = actions_problem(list(form.actions.data or []))
    if problem:
        add_error(form.actions, problem)
        ok = False
    return ok


@bp.get("/<slug>/roles")
@login_required
def roles(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)  # scope: 404, never 403
    authorize("org.roles.read", organization)  # policy: 403 for anyone but the owner
    return _render_roles(organization)


@bp.post("/<slug>/roles")
@login_required
def create_custom_role(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    _authorize_change(organization)
    form = CustomRoleForm()
    if not _valid(form, organization):
        return _render_roles(organization, new_form=form, status=422)
    db = get_db()
    try:
        organization = lock_and_recheck(organization)  # one writer: names stay unique
    except MembershipChanged:
        return changed_meanwhile(organization)
    name = form.name.data or ""
    problem = name_problem(db, organization.id, name)  # as it is now, inside the lock
    if problem:
        db.rollback()
        add_error(form.name, problem)
        return _render_roles(organization, new_form=form, status=409)
    role = create_role(db, organization, name, list(form.actions.data or []))
    db.commit()
    record_audit(
        "org.roles.create",
        organization_id=organization.id,
        resource_id=f"role:{role.key}",
        reason=f"created role {role.key}: {role.actions}",
    )
    flash("Role created. Give it to someone on the Members page.", "success")
    return to_page("orgs.roles", slug=organization.slug)


@bp.post("/<slug>/roles/<key>")
@login_required
def update_custom_role(slug: str, key: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    role = _role_or_404(organization, key)
    _authorize_change(organization)
    form = CustomRoleForm()
    if not _valid(form, organization, except_key=role.key):
        return _render_roles(organization, edited=(role.key, form), status=422)
    db = get_db()
    try:
        organization = lock_and_recheck(organization)
    except MembershipChanged:
        return changed_meanwhile(organization)
    change = update_role(db, role, form.name.data or "", list(form.actions.data or []))
    db.commit()
    record_audit(
        "org.roles.update",
        organization_id=organization.id,
        resource_id=f"role:{role.key}",
        reason=f"changed role {role.key}: {change}",
    )
    flash("Role saved. Its members have the new actions from their next request.", "success")
    return to_page("orgs.roles", slug=organization.slug)


@bp.post("/<slug>/roles/<key>/delete")
@login_required
def delete_custom_role(slug: str, key: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    role = _role_or_404(organization, key)
    _authorize_change(organization)
    db = get_db()
    try:
        # Locked: no role change or invitation can hand the role out while it goes.
        organization = lock_and_recheck(organization)
        delete_role(db, role)
    except MembershipChanged:
        return changed_meanwhile(organization)
    except RoleInUse as in_use:
        db.rollback()
        return _render_roles(organization, problem=_in_use(role, in_use), status=409)
    db.commit()
    record_audit(
        "org.roles.delete",
        organization_id=organization.id,
        resource_id=f"role:{key}",
        reason=f"deleted role {key}",
    )
    flash("Role deleted.", "success")
    return to_page("orgs.roles", slug=organization.slug)


def _in_use(role: CustomRole, in_use: RoleInUse) -> str:
    """The 409's words: who still holds the role, so the owner knows whom to change."""
    held = []
    if in_use.members:
        held.append("members " + ", ".join(in_use.members))
    if in_use.invitations:
        held.append("pending invitations to " + ", ".join(in_use.invitations))
    return (
        f"The role {role.name} was not deleted: it is still held by {' and '.join(held)}. "
        "Give them another role, or revoke the invitations, then delete it."
    )
