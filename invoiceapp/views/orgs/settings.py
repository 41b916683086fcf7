"""Switching and creating organizations; one organization's overview, settings, leaving."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from ...audit import record_audit
from ...authn.gate import login_required
from ...authn.redirects import safe_next
from ...authn.second_factor import has_second_factor
from ...authz.enforce import ReauthenticationRequired, authorize
from ...authz.explain import capabilities
from ...authz.policy import role_name
from ...authz.scope import organization_in_my_orgs_or_404
from ...db import get_db
from ...forms import add_error
from ...models import Organization
from ...organizations import (
    FREE_PLAN_MEMBER_LIMIT,
    MembershipChanged,
    create_organization,
    remove_membership,
    seats_in_use,
)
from ...principal import require_principal
from ..org_security import mail_proof_rule_change, proof_rule_in_words
from .common import bp, lock_and_recheck, my_membership, to_page
from .forms import NewOrganizationForm, SettingsForm
from .members import changed_meanwhile


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
    return redirect(_unpinned(back) if back else url_for("invoices.index"), code=303)


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
    return to_page("orgs.show", slug=organization.slug)


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
        role=role_name(principal, organization.id),
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
    page = url_for(
        "orgs.show", slug=organization.slug
    )  # after re-authenticating, back to the form (a GET)
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
    return to_page("orgs.show", slug=organization.slug)


@bp.post("/<slug>/leave")
@login_required
def leave(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    authorize("org.leave", organization)  # the owner is told to transfer first
    db = get_db()
    membership = my_membership(organization)
    user_id = membership.user_id
    try:
        lock_and_recheck(organization)  # still the role that was allowed to leave
        remove_membership(db, membership, role=require_principal().role_in(organization.id) or "")
        db.commit()
    except MembershipChanged:
        return changed_meanwhile(organization)
    record_audit(
        "org.leave",
        organization_id=organization.id,
        resource_id=f"membership:{user_id}",
        reason="left the organization",
    )
    flash("You left the organization.", "success")
    return to_page("pages.dashboard")
