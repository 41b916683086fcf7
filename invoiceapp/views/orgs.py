"""Organization pages: create, settings, members, invitations, billing, ownership.

Every view about one organization runs the lesson's steps in order:

    organization = organization_in_my_orgs_or_404(slug)   # scope: 404, never 403
    authorize("member.remove", membership)                # policy: 403, or re-authentication
    ...the work, committed; then record_audit(...) for anything sensitive

Forms read only their own fields, so an ``organization_id``, ``owner`` or ``plan``
posted alongside changes nothing (mass assignment). Flash messages name no people and
no organizations: they travel in a readable cookie.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from wtforms import BooleanField, SelectField, StringField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # new in WTForms 3.3; types-WTForms is 3.2
from wtforms.validators import DataRequired, Length

from ..audit import record_audit
from ..authn.access_tokens import revoke_access_token
from ..authn.emails import MAX_EMAIL_LENGTH, valid_new_email
from ..authn.gate import login_required
from ..authn.redirects import safe_next
from ..authn.second_factor import has_second_factor
from ..authz.enforce import ReauthenticationRequired, authorize
from ..authz.explain import capabilities
from ..authz.org_security import invitation_domain_refusal
from ..authz.policy import ROLES
from ..authz.scope import organization_in_my_orgs_or_404
from ..db import get_db, utcnow
from ..forms import Form, add_error, no_control_characters, strip
from ..mail import absolute_url, send_mail
from ..models import (
    AuditEvent,
    Invitation,
    Membership,
    Organization,
    PersonalAccessToken,
    Plan,
    Role,
    User,
)
from ..organizations import (
    FREE_PLAN_MEMBER_LIMIT,
    MembershipChanged,
    create_organization,
    fits_free_plan,
    has_room_for_invitation,
    is_member_by_email,
    issue_invitation_token,
    lock_organization,
    membership_of,
    new_invitation,
    recheck_roles,
    remove_membership,
    revoke_invitation,
    seats_in_use,
    set_role,
    transfer_ownership,
)
from ..path_ids import path_id_or_404
from ..principal import require_principal
from .org_security import mail_proof_rule_change, proof_rule_in_words

bp = Blueprint("orgs", __name__, url_prefix="/orgs")

# Row ids in URLs fit a 32-bit integer; anything larger is a 404, not a database error.
MAX_ID = 2**31 - 1
MAX_NAME_LENGTH = 100
# Roles a form may hand out. The owner changes only by a transfer.
ASSIGNABLE_ROLES = [Role.MEMBER.value, Role.ADMIN.value]
PLANS = [Plan.FREE.value, Plan.PRO.value]
FULL = (
    f"The free plan allows {FREE_PLAN_MEMBER_LIMIT} members, pending invitations included. "
    "Revoke an invitation, remove a member or upgrade to pro first."
)
CHANGED_MEANWHILE = (
    "Someone changed this organization's members or roles while you were deciding, so "
    "nothing was done. Here is the list as it is now; try again if it still makes sense."
)


# ---------------------------------------------------------------------------
# Forms
# ---------------------------------------------------------------------------


class NewOrganizationForm(Form):
    name = StringField(
        "Organization name",
        filters=[strip],
        validators=[
            DataRequired("Enter the organization's name."),
            Length(max=MAX_NAME_LENGTH, message=f"Use at most {MAX_NAME_LENGTH} characters."),
            no_control_characters,
        ],
        render_kw={"autocomplete": "organization", "autofocus": True},
    )


class SettingsForm(Form):
    # A checkbox posts "on" when ticked and nothing when not.
    invoice_duplication = BooleanField(
        "Members may duplicate invoices", false_values=("", "false", "off", "0")
    )
    requires_two_factor = BooleanField(
        "This organization requires two-factor", false_values=("", "false", "off", "0")
    )


class InviteForm(Form):
    email = StringField(
        "Email address",
        validators=[DataRequired("Enter the address to invite."), valid_new_email],
        render_kw={"type": "email", "autocomplete": "off", "maxlength": MAX_EMAIL_LENGTH},
    )
    role = SelectField("Role", choices=ASSIGNABLE_ROLES, default=Role.MEMBER.value)  # type: ignore[arg-type]  # plain values are choices too; the stubs want pairs


class RoleForm(Form):
    role = SelectField("Role", choices=ASSIGNABLE_ROLES)  # type: ignore[arg-type]  # plain values are choices too; the stubs want pairs


class TransferForm(Form):
    # Choices are the other members, set per request.
    user_id = SelectField("New owner", coerce=int, choices=[])


class BillingForm(Form):
    plan = SelectField("Plan", choices=PLANS)  # type: ignore[arg-type]  # plain values are choices too; the stubs want pairs


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _page(path: str) -> ResponseReturnValue:
    return redirect(path, code=303)


def _member_or_404(organization: Organization, user_id: int) -> Membership:
    """A membership in *this* organization; another organization's member is a 404 too."""
    membership = membership_of(get_db(), organization.id, user_id) if user_id <= MAX_ID else None
    if membership is None:
        abort(404)
    return membership


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


def _my_membership(organization: Organization) -> Membership:
    membership = membership_of(get_db(), organization.id, require_principal().user.id)
    assert membership is not None  # scope found the organization through it
    return membership


def _lock_and_recheck(organization: Organization, *targets: Membership) -> Organization:
    """Lock the organization, then check that what authorize() was told still holds.

    authorize() answered about the roles read at the start of the request: yours, and
    those of the ``targets`` you act on. Another request may have changed them since.
    Inside the lock they can no longer change, so they are read again and compared;
    MembershipChanged (a 409) if any moved. Returns the organization, re-read (its plan).
    """
    db = get_db()
    locked = lock_organization(db, organization)
    principal = require_principal()
    expected = {principal.user.id: principal.role_in(organization.id)}
    expected |= {target.user_id: target.role for target in targets}
    recheck_roles(db, organization.id, expected)
    return locked


def _changed_meanwhile(organization: Organization) -> ResponseReturnValue:
    """The 409 for a request that lost a race: rolled back, nothing half-written."""
    get_db().rollback()
    return _render_members(organization, problem=CHANGED_MEANWHILE, status=409)


def _transfer_candidates(organization: Organization) -> list[SelectChoice]:
    me = require_principal().user.id
    rows = get_db().execute(
        select(User.id, User.display_name, User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.organization_id == organization.id, User.id != me)
        .order_by(User.display_name, User.id)
    )
    return [SelectChoice(user_id, f"{name} ({email})") for user_id, name, email in rows]


def _transfer_form(organization: Organization, *, posted: bool = False) -> TransferForm:
    form = TransferForm() if posted else TransferForm(formdata=None)
    form.user_id.choices = _transfer_candidates(organization)
    return form


def _expires_in_words(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


def _one_line(text: str) -> str:
    """For mail subjects: whitespace of any kind becomes one space."""
    return " ".join(text.split())


def _send_invitation(organization: Organization, invitation: Invitation, raw_token: str) -> None:
    lifetime = current_app.config["INVITATION_SECONDS"]
    inviter = require_principal().user
    send_mail(
        invitation.email,
        _one_line(f"You are invited to join {organization.name} on InvoiceApp"),
        "invitation",
        accept_url=absolute_url("/invitations/" + raw_token),
        organization_name=organization.name,
        inviter_name=inviter.display_name,
        role=invitation.role,
        expires_in=_expires_in_words(lifetime),
    )


# ---------------------------------------------------------------------------
# Switching and creating
# ---------------------------------------------------------------------------


@bp.post("/switch")
@login_required
def switch() -> ResponseReturnValue:
    # Only your own organizations can be found: anything else is a 404.
    organization = organization_in_my_orgs_or_404(request.form.get("organization", ""))
    auth_session = require_principal().session
    assert auth_session is not None  # a principal always comes from a session
    # Kept on the server-side session, so each signed-in browser has its own choice.
    auth_session.active_organization_id = organization.id
    get_db().commit()
    flash(f"Now working in {organization.name}.", "info")
    back = safe_next(request.form.get("next"))
    return redirect(_unpinned(back) if back else "/invoices", code=303)


def _unpinned(path: str) -> str:
    """``path`` without its ``?organization=``: after a switch the page shows the new one.

    The invoice list's links name their organization (so another tab's switch cannot
    change what they mean); the switch itself is the one place where that is the point.
    """
    parts = urlsplit(path)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True)
             if key != "organization"]  # fmt: skip
    return urlunsplit(parts._replace(query=urlencode(query)))


@bp.get("/new")
@login_required
def new() -> ResponseReturnValue:
    form = NewOrganizationForm(formdata=None)
    return render_template("orgs/new.html", form=form, limit=FREE_PLAN_MEMBER_LIMIT)


@bp.post("/new")
@login_required
def create() -> ResponseReturnValue:
    # Anyone signed in may start an organization; they become its owner, nothing more.
    form = NewOrganizationForm()
    if not form.validate_on_submit():
        return render_template("orgs/new.html", form=form, limit=FREE_PLAN_MEMBER_LIMIT), 422
    principal = require_principal()
    db = get_db()
    organization = create_organization(db, form.name.data or "", principal.user)
    assert principal.session is not None
    principal.session.active_organization_id = organization.id
    db.commit()
    record_audit(
        "org.create",
        organization_id=organization.id,
        resource_id=organization.slug,
        reason="created the organization as its owner",
    )
    flash("Organization created. You are its owner.", "success")
    return _page(f"/orgs/{organization.slug}")


# ---------------------------------------------------------------------------
# One organization: overview, settings, leaving
# ---------------------------------------------------------------------------


@bp.get("/<slug>")
@login_required
def show(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    authorize("org.read", organization)
    settings_form = SettingsForm(
        formdata=None,
        invoice_duplication=organization.invoice_duplication_enabled,
        requires_two_factor=organization.requires_two_factor,
    )
    return _render_show(organization, settings_form)


def _render_show(organization: Organization, settings_form: SettingsForm) -> str:
    principal = require_principal()
    return render_template(
        "orgs/show.html",
        organization=organization,
        role=principal.role_in(organization.id),
        capabilities=capabilities(principal, organization),
        seats=seats_in_use(get_db(), organization.id),
        settings_form=settings_form,
    )


NO_SECOND_FACTOR = (
    "Set up two-factor sign-in for your own account first (an authenticator app or a "
    "passkey, under Account). Otherwise this rule would lock you out of your own organization."
)


def _may_switch_two_factor_rule(organization: Organization, turning_on: bool) -> bool:
    """The owner's extra step for the "requires two-factor" rule (CONTRACT §7: elevated).

    The checkbox is the security policy's proof rule, so it asks what /orgs/<slug>/security
    asks (org.security.update): fresh proof within the organization's own elevation window,
    with the second factor when there is one. Switching it off is the change a thief wants.
    Raises ReauthenticationRequired for a stale session, and, when switching it on, for a
    session not proven with a second factor: from the next request on, this organization
    refuses exactly such sessions, its owner's included. False: no second factor at all.
    """
    principal = require_principal()
    if turning_on and not has_second_factor(principal.user):
        return False
    page = f"/orgs/{organization.slug}"  # after re-authenticating, back to the form (a GET)
    try:
        authorize("org.security.update", organization)
    except ReauthenticationRequired as needed:
        second_factor = needed.second_factor or turning_on
        raise ReauthenticationRequired(page, second_factor=second_factor) from None
    if turning_on and not principal.two_factor_proven:
        raise ReauthenticationRequired(page, second_factor=True)
    return True


@bp.post("/<slug>/settings")
@login_required
def update_settings(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    authorize("org.settings.update", organization)
    form = SettingsForm()
    form.validate()  # a checkbox cannot be invalid: absent means off
    enabled = bool(form.invoice_duplication.data)
    requires_two_factor = bool(form.requires_two_factor.data)
    rule_changed = organization.requires_two_factor != requires_two_factor
    if rule_changed and not _may_switch_two_factor_rule(organization, requires_two_factor):
        add_error(form.requires_two_factor, NO_SECOND_FACTOR)
        return _render_show(organization, form), 422
    changed = organization.invoice_duplication_enabled != enabled
    proofs_before = proof_rule_in_words(organization)
    organization.invoice_duplication_enabled = enabled
    organization.requires_two_factor = requires_two_factor
    if rule_changed:  # the security policy's proof rule: this checkbox is "a second factor"
        organization.proof_rule = "second_factor" if requires_two_factor else "any"
    get_db().commit()
    if changed:
        record_audit(
            "org.settings.update",
            organization_id=organization.id,
            resource_id=organization.slug,
            reason=f"invoice duplication {'on' if enabled else 'off'}",
        )
    if rule_changed:
        record_audit(
            "org.settings.update",
            organization_id=organization.id,
            resource_id=organization.slug,
            reason=f"requires two-factor {'on' if requires_two_factor else 'off'}",
        )
        mail_proof_rule_change(organization, proofs_before)  # as the security page does
    flash("Settings saved." if changed or rule_changed else "Nothing changed.", "success")
    return _page(f"/orgs/{organization.slug}")


@bp.post("/<slug>/leave")
@login_required
def leave(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    authorize("org.leave", organization)  # the owner is told to transfer first
    db = get_db()
    membership = _my_membership(organization)
    user_id = membership.user_id
    try:
        _lock_and_recheck(organization)  # still the role that was allowed to leave
        remove_membership(db, membership, role=require_principal().role_in(organization.id) or "")
        db.commit()
    except MembershipChanged:
        return _changed_meanwhile(organization)
    record_audit(
        "org.leave",
        organization_id=organization.id,
        resource_id=f"membership:{user_id}",
        reason="left the organization",
    )
    flash("You left the organization.", "success")
    return _page("/dashboard")


# ---------------------------------------------------------------------------
# Members
# ---------------------------------------------------------------------------


def _render_members(
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
    html = render_template(
        "orgs/members.html",
        organization=organization,
        members=members,
        invitations=invitations,
        tokens=tokens,
        invite_form=invite_form or InviteForm(formdata=None),
        transfer_form=_transfer_form(organization),
        assignable_roles=ASSIGNABLE_ROLES,
        view_as_roles=ROLES,
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
    return _render_members(organization)


@bp.post("/<slug>/members/<int(max=2147483647):user_id>/role")
@login_required
def change_role(slug: str, user_id: int) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    membership = _member_or_404(organization, user_id)
    new_role = request.form.get("role", "")
    # The policy refuses "owner", the owner's own membership and yourself (403).
    authorize("member.change_role", membership, role=new_role)
    form = RoleForm()
    if not form.validate():
        return _render_members(organization, problem="Choose the role member or admin.", status=422)
    old_role = membership.role
    if old_role == new_role:
        flash("Nothing changed: that is already their role.", "info")
        return _page(f"/orgs/{organization.slug}/members")
    db = get_db()
    try:
        _lock_and_recheck(organization, membership)
        set_role(db, membership, from_role=old_role, to_role=new_role)
        db.commit()
    except MembershipChanged:
        return _changed_meanwhile(organization)
    record_audit(
        "member.change_role",
        organization_id=organization.id,
        resource_id=f"membership:{user_id}",
        reason=f"role {old_role} -> {new_role}",
    )
    flash("Role changed. It applies from their very next request.", "success")
    return _page(f"/orgs/{organization.slug}/members")


@bp.post("/<slug>/members/<int(max=2147483647):user_id>/remove")
@login_required
def remove_member(slug: str, user_id: int) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    membership = _member_or_404(organization, user_id)
    authorize("member.remove", membership)  # admins: plain members only; never the owner
    db = get_db()
    role = membership.role
    try:
        _lock_and_recheck(organization, membership)
        # Their browsers and their API tokens stop working in this organization at once.
        remove_membership(db, membership, role=role)
        db.commit()
    except MembershipChanged:
        return _changed_meanwhile(organization)
    record_audit(
        "member.remove",
        organization_id=organization.id,
        resource_id=f"membership:{user_id}",
        reason=f"removed a {role}",
    )
    flash("Member removed. They lost access at once, API tokens included.", "success")
    return _page(f"/orgs/{organization.slug}/members")


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
    membership = _member_or_404(organization, user_id)
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
    return _page(f"/orgs/{organization.slug}/members")


# ---------------------------------------------------------------------------
# Invitations (accepting one is in invoiceapp.views.invitations)
# ---------------------------------------------------------------------------


@bp.post("/<slug>/invitations")
@login_required
def invite(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    # The role asked for is an input: an admin may not invite an owner.
    authorize("member.invite", organization, role=request.form.get("role", ""))
    form = InviteForm()
    if not form.validate():
        return _render_members(organization, invite_form=form, status=422)
    email, role = form.email.data or "", form.role.data or Role.MEMBER.value
    outside = invitation_domain_refusal(organization, email)  # the security policy's list
    if outside is not None:
        form.email.errors = [outside.reason]
        return _render_members(organization, invite_form=form, status=422)

    db = get_db()
    try:
        organization = _lock_and_recheck(organization)  # the plan as it is now, not as read
    except MembershipChanged:
        return _changed_meanwhile(organization)
    if is_member_by_email(db, organization.id, email):
        db.rollback()
        form.email.errors = ["That address already belongs to a member of this organization."]
        return _render_members(organization, invite_form=form, status=409)
    if not has_room_for_invitation(db, organization, email):
        db.rollback()
        return _render_members(organization, invite_form=form, problem=FULL, status=409)
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
    return _page(f"/orgs/{organization.slug}/members")


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
    return _page(f"/orgs/{organization.slug}/members")


@bp.post("/<slug>/invitations/<public_id>/resend")
@login_required
def resend(slug: str, public_id: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    invitation = _invitation_or_404(organization, public_id)
    authorize("member.invite", organization, role=invitation.role)
    db = get_db()
    try:
        organization = _lock_and_recheck(organization)
    except MembershipChanged:
        return _changed_meanwhile(organization)
    # An expired invitation gave up its seat; someone may have taken it since.
    if not has_room_for_invitation(db, organization, invitation.email):
        db.rollback()
        return _render_members(organization, problem=FULL, status=409)
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
    return _page(f"/orgs/{organization.slug}/members")


# ---------------------------------------------------------------------------
# Ownership
# ---------------------------------------------------------------------------


@bp.get("/<slug>/transfer")
@login_required
def transfer_form(slug: str) -> ResponseReturnValue:
    """Where re-authentication returns to: the POST's path, asked for with GET."""
    organization = organization_in_my_orgs_or_404(slug)
    authorize("org.transfer_ownership", organization)
    return render_template(
        "orgs/transfer.html", organization=organization, form=_transfer_form(organization)
    )


@bp.post("/<slug>/transfer")
@login_required
def transfer(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    # Owner only, with a fresh password. A double submit: the second finds an admin (403).
    authorize("org.transfer_ownership", organization)
    form = _transfer_form(organization, posted=True)
    if not form.validate():
        html = render_template("orgs/transfer.html", organization=organization, form=form)
        return html, 422
    db = get_db()
    current = _my_membership(organization)
    target = _member_or_404(organization, form.user_id.data or 0)
    try:
        _lock_and_recheck(organization, target)  # you are still the owner; they, as read
        transfer_ownership(db, current, target)
        db.commit()
    except MembershipChanged:
        return _changed_meanwhile(organization)

    old_owner, new_owner = require_principal().user, target.user
    for person, is_new_owner in ((old_owner, False), (new_owner, True)):
        send_mail(
            person.email,
            _one_line(f"Ownership of {organization.name} was transferred"),
            "ownership_transferred",
            recipient_name=person.display_name,
            is_new_owner=is_new_owner,
            organization_name=organization.name,
            old_owner_name=old_owner.display_name,
            new_owner_name=new_owner.display_name,
            organization_url=absolute_url(f"/orgs/{organization.slug}"),
        )
    record_audit(
        "org.transfer_ownership",
        organization_id=organization.id,
        resource_id=f"membership:{target.user_id}",
        reason=f"owner user {old_owner.id} -> user {target.user_id}; old owner is now admin",
    )
    flash("Ownership transferred. You are now an admin.", "success")
    return _page(f"/orgs/{organization.slug}/members")


# ---------------------------------------------------------------------------
# Billing
# ---------------------------------------------------------------------------


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
        return _page(f"/orgs/{organization.slug}/billing")
    db = get_db()
    try:
        organization = _lock_and_recheck(organization)  # you are still the owner
    except MembershipChanged:
        return _changed_meanwhile(organization)
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
    return _page(f"/orgs/{organization.slug}/billing")
