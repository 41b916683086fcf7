"""Transferring ownership: owner only, with a fresh password."""

from __future__ import annotations

from flask import flash, render_template, url_for
from flask.typing import ResponseReturnValue

from ...audit import record_audit
from ...authn.gate import login_required
from ...authz.enforce import authorize
from ...authz.scope import organization_in_my_orgs_or_404
from ...db import get_db
from ...mail import absolute_url, send_mail
from ...organizations import MembershipChanged, transfer_ownership
from ...principal import require_principal
from .common import bp, lock_and_recheck, member_or_404, my_membership, one_line, to_page
from .forms import new_transfer_form
from .members import changed_meanwhile


@bp.get("/<slug>/transfer")
@login_required
def transfer_form(slug: str) -> ResponseReturnValue:
    """Where re-authentication returns to: the POST's path, asked for with GET."""
    organization = organization_in_my_orgs_or_404(slug)
    authorize("org.transfer_ownership", organization)
    return render_template(
        "orgs/transfer.html", organization=organization, form=new_transfer_form(organization)
    )


@bp.post("/<slug>/transfer")
@login_required
def transfer(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    # Owner only, with a fresh password. A double submit: the second finds an admin (403).
    authorize("org.transfer_ownership", organization)
    form = new_transfer_form(organization, posted=True)
    if not form.validate():
        html = render_template("orgs/transfer.html", organization=organization, form=form)
        return html, 422
    db = get_db()
    current = my_membership(organization)
    target = member_or_404(organization, form.user_id.data or 0)
    try:
        lock_and_recheck(organization, target)  # you are still the owner; they, as read
        transfer_ownership(db, current, target)
        db.commit()
    except MembershipChanged:
        return changed_meanwhile(organization)

    old_owner, new_owner = require_principal().user, target.user
    for person, is_new_owner in ((old_owner, False), (new_owner, True)):
        send_mail(
            person.email,
            one_line(f"Ownership of {organization.name} was transferred"),
            "ownership_transferred",
            recipient_name=person.display_name,
            is_new_owner=is_new_owner,
            organization_name=organization.name,
            old_owner_name=old_owner.display_name,
            new_owner_name=new_owner.display_name,
            organization_url=absolute_url(url_for("orgs.show", slug=organization.slug)),
        )
    record_audit(
        "org.transfer_ownership",
        organization_id=organization.id,
        resource_id=f"membership:{target.user_id}",
        reason=f"owner user {old_owner.id} -> user {target.user_id}; old owner is now admin",
    )
    flash("Ownership transferred. You are now an admin.", "success")
    return to_page("orgs.members", slug=organization.slug)
