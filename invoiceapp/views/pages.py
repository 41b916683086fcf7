"""The landing page (anyone) and the dashboard (any signed-in user)."""

from __future__ import annotations

import flask_login
from flask import Blueprint, current_app, render_template, send_from_directory
from flask.typing import ResponseReturnValue

from ..authn.gate import login_required
from ..authz.policy import TWO_FACTOR_RULE, can
from ..authz.scope import NEWEST_FIRST, active_organization, live_invoices_of
from ..db import get_db
from ..invoicing import live_invoice_counts
from ..models import Invoice
from ..principal import require_principal

bp = Blueprint("pages", __name__)


@bp.get("/")
def landing() -> ResponseReturnValue:
    return render_template(
        "pages/landing.html", signed_in=flask_login.current_user.is_authenticated
    )


@bp.get("/favicon.ico")
def favicon() -> ResponseReturnValue:
    """Browsers ask for /favicon.ico on their own (the API reference page too); an SVG
    answers, instead of a 404 in every page's log."""
    return send_from_directory(
        current_app.static_folder or "static", "favicon.svg", mimetype="image/svg+xml",
        max_age=86400,
    )  # fmt: skip


@bp.get("/dashboard")
@login_required
def dashboard() -> ResponseReturnValue:
    principal = require_principal()
    organization = active_organization(principal)
    recent: list[Invoice] = []
    counts: dict[str, int] = {}
    # The dashboard shows the organization's invoices, so it asks the same question as the
    # invoice list. A refusal (an organization that requires two-factor, say) keeps the
    # page, which is where sign-in lands, and leaves the invoices out with the reason.
    reading = can(principal, "invoice.read", organization) if organization else None
    if organization is not None and reading:
        db = get_db()
        live = live_invoices_of(organization.id)
        recent = list(db.scalars(live.order_by(*NEWEST_FIRST).limit(5)))
        # Kept by the database (InvoiceCount): the same cost at 10 invoices and 100,000.
        counts = live_invoice_counts(db, organization.id)
    return render_template(
        "pages/dashboard.html",
        organization=organization,
        recent=recent,
        counts=counts,
        # A Decision is falsy when refused, so the template gets the reason itself.
        refusal=reading.reason if reading is not None and not reading.allowed else None,
        second_factor_would_help=reading is not None and reading.rule == TWO_FACTOR_RULE,
    )
