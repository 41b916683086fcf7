"""The demo's own switches: the hidden-button lab and "Reset the demo". Demo mode only.

Outside demo mode these routes do not exist (404), like /dev/mail. Both are POSTs with
a CSRF token, open to any visitor: they change teaching state, not anyone's rights.

The lab shows the buttons the policy hides, marked as hidden. Pressing one sends the
real request, so the visitor meets the server's real answer (403, 404 or a password
prompt): hiding a button is courtesy, the action boundary is where the decision is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue

from .. import demo_data
from ..authn.redirects import safe_next
from ..authz.explain import Trace, explain
from ..db import get_db
from ..models import Invoice, Membership, Organization
from ..tour import LAB_KEY, lab_is_on

bp = Blueprint("demo", __name__, url_prefix="/demo")


@bp.before_request
def only_in_demo_mode() -> None:
    if not current_app.config["DEMO_MODE"]:
        abort(404)


@bp.post("/lab")
def lab() -> ResponseReturnValue:
    """Switch "show actions hidden from me" on or off, then go back to the page."""
    on = request.form.get("show") == "on"
    session[LAB_KEY] = on  # False, not absent: see invoiceapp.tour on carried state
    flash(
        "The lab is on: buttons the policy hides are shown, marked “hidden from you”."
        if on
        else "The lab is off: you see only what the policy allows.",
        "info",
    )
    return redirect(safe_next(request.form.get("next")) or url_for("tour.tour"), code=303)


@bp.get("/reset")
def reset_form() -> ResponseReturnValue:
    """Say what a reset throws away before anyone presses the button that does it."""
    return render_template("pages/demo_reset.html")


@bp.post("/reset")
def reset() -> ResponseReturnValue:
    """Put every demo row back as seed.py makes it (both run invoiceapp.demo_data); every
    session ends with the rest.

    Only the confirmation page's button says ``confirm=yes``; any other post (an old tab,
    a stray form) is sent to that page instead of wiping the demo.
    """
    if request.form.get("confirm") != "yes":
        flash("Nothing was reset. Read what a reset does, then confirm it here.", "info")
        return redirect(url_for("demo.reset_form"), code=303)
    db = get_db()
    demo_data.reset(db)
    demo_data.seed(db)
    flash("The demo was reset: every account, organization and invoice is as new. "
          "Everyone was signed out.", "success")  # fmt: skip
    return redirect(url_for("pages.landing"), code=303)


# ---------------------------------------------------------------------------
# The buttons the lab can show: the real routes, with the fields each one needs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LabButton:
    label: str
    method: str
    url: str
    trace: Trace
    fields: dict[str, str] = field(default_factory=dict)


# action, label, method, and the endpoint that takes it
INVOICE_BUTTONS = (
    ("invoice.update", "Edit", "GET", "invoices.edit"),
    ("invoice.send", "Send", "POST", "invoices.send"),
    ("invoice.mark_paid", "Mark paid", "POST", "invoices.mark_paid"),
    ("invoice.void", "Void", "POST", "invoices.void"),
    ("invoice.duplicate", "Duplicate", "POST", "invoices.duplicate"),
    ("invoice.delete", "Delete this invoice", "GET", "invoices.confirm_delete"),
)


@bp.app_template_global("hidden_buttons")
def hidden_buttons(resource: object) -> list[LabButton]:
    """The buttons of this invoice, membership or organization that the policy hides."""
    if not lab_is_on():
        return []
    buttons = []
    for action, label, method, url, fields in _buttons_of(resource):
        trace = explain(action, resource, **fields)
        if not trace.allowed:
            buttons.append(LabButton(label, method, url, trace, fields))
    return buttons


def _buttons_of(resource: object) -> list[tuple[str, str, str, str, dict[str, str]]]:
    if isinstance(resource, Invoice):
        return [(action, label, method, url_for(endpoint, invoice_id=resource.public_id), {})
                for action, label, method, endpoint in INVOICE_BUTTONS]  # fmt: skip
    if isinstance(resource, Membership):
        slug, user_id = resource.organization.slug, resource.user_id
        other = "member" if resource.role == "admin" else "admin"
        role_url = url_for("orgs.change_role", slug=slug, user_id=user_id)
        remove_url = url_for("orgs.remove_member", slug=slug, user_id=user_id)
        return [
            ("member.change_role", f"Make {other}", "POST", role_url, {"role": other}),
            ("member.remove", "Remove", "POST", remove_url, {}),
        ]
    if isinstance(resource, Organization):
        return [("member.invite", "Send invitation", "POST",
                 url_for("orgs.invite", slug=resource.slug), {"role": "member"})]  # fmt: skip
    return []
