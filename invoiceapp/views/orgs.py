"""Organization pages. Switching changes which organization /invoices shows."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request
from flask.typing import ResponseReturnValue

from ..authn.gate import login_required
from ..authn.redirects import safe_next
from ..authz.scope import organization_in_my_orgs_or_404
from ..db import get_db
from ..principal import require_principal

bp = Blueprint("orgs", __name__, url_prefix="/orgs")


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
    return redirect(safe_next(request.form.get("next")) or "/invoices", code=303)
