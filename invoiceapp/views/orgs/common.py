"""What every organization page shares: the blueprint, and the lookups and the lock.

Every view about one organization runs the lesson's steps in order:

    organization = organization_in_my_orgs_or_404(slug)   # scope: 404, never 403
    authorize("member.remove", membership)                # policy: 403, or re-authentication
    ...the work, committed; then record_audit(...) for anything sensitive
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, redirect, url_for
from flask.typing import ResponseReturnValue

from ...db import get_db
from ...models import Membership, Organization
from ...organizations import lock_organization, membership_of, recheck_roles
from ...principal import require_principal

bp = Blueprint("orgs", __name__, url_prefix="/orgs")

# Row ids in URLs fit a 32-bit integer; anything larger is a 404, not a database error.
MAX_ID = 2**31 - 1


def to_page(endpoint: str, **values: Any) -> ResponseReturnValue:
    """303 See Other to a page named by its endpoint: after a POST, the browser GETs it."""
    return redirect(url_for(endpoint, **values), code=303)


def member_or_404(organization: Organization, user_id: int) -> Membership:
    """A membership in *this* organization; another organization's member is a 404 too."""
    membership = membership_of(get_db(), organization.id, user_id) if user_id <= MAX_ID else None
    if membership is None:
        abort(404)
    return membership


def my_membership(organization: Organization) -> Membership:
    membership = membership_of(get_db(), organization.id, require_principal().user.id)
    assert membership is not None  # scope found the organization through it
    return membership


def lock_and_recheck(organization: Organization, *targets: Membership) -> Organization:
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


def one_line(text: str) -> str:
    """For mail subjects: whitespace of any kind becomes one space."""
    return " ".join(text.split())
