"""View as member (CONTRACT section 5): the two buttons that start and end it.

The mechanics and the rules are in invoiceapp.authz.view_as; these views only read the
form, scope the lookups (another organization, or someone who is not a member of this
one, is a 404) and ask authorize() through start_view_as().
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import UnprocessableEntity

from ..authn.gate import login_required
from ..authz.policy import ROLES
from ..authz.roles import custom_role_or_none
from ..authz.scope import organization_in_my_orgs_or_404
from ..authz.view_as import end_view_as, start_view_as
from ..db import get_db
from ..models import Membership, Organization
from ..organizations import membership_of
from ..principal import require_principal

bp = Blueprint("view_as", __name__, url_prefix="/orgs")

MAX_ID = 2**31 - 1


@bp.post("/<slug>/view-as")
@login_required  # authentication gate: 401
def start(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)  # scope: 404, never 403
    member, role = _chosen(organization)
    start_view_as(organization, member=member, role=role)  # policy: 403; commits
    # No names here: flash messages travel in a readable cookie. The banner has them.
    flash("View-as started: each page shows what they would see. Nothing can be changed "
          "until you end it.", "info")  # fmt: skip
    return redirect(url_for("pages.dashboard"), code=303)


@bp.post("/<slug>/view-as/end")
@login_required
def end(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    principal = require_principal()
    view = principal.viewing_as
    if view is None or view.organization_id != organization.id:
        flash("You were not viewing this organization as anyone.", "info")
    else:
        end_view_as(principal)  # commits
        flash("View-as ended: you see and act as yourself again.", "success")
    return redirect(url_for("orgs.members", slug=organization.slug), code=303)


def _chosen(organization: Organization) -> tuple[Membership | None, str | None]:
    """The form's one choice: ``member`` (a user id) or ``role``. 422 for anything else."""
    member_field = request.form.get("member", "").strip()
    role_field = request.form.get("role", "").strip()
    if bool(member_field) == bool(role_field):
        raise UnprocessableEntity("Choose one member, or one role, to view the organization as.")
    if role_field:
        if not _is_a_role_of(organization, role_field):
            raise UnprocessableEntity("There is no such role to view as: choose one from the list.")
        return None, role_field
    if not member_field.isdigit() or int(member_field) > MAX_ID:
        abort(404)  # like an id that is not a member here
    membership = membership_of(get_db(), organization.id, int(member_field))
    if membership is None:
        abort(404)  # not a member of *this* organization: the same for everyone else
    if membership.user_id == require_principal().user.id:
        raise UnprocessableEntity("That is you: choose another member, or a role.")
    return membership, None


def _is_a_role_of(organization: Organization, key: str) -> bool:
    """A built-in role, or one of this organization's own custom roles."""
    return key in ROLES or custom_role_or_none(get_db(), organization.id, key) is not None
