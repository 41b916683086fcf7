"""The page behind a mailed claim link: /claim-address/<token> (invoiceapp.authn.claims).

Opening the link (GET) only shows what a claim does and asks for a new password: mail
scanners open links too, and must not spend it. The button (a POST) claims.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from ..authn.claims import claim_address, usable_claim
from ..authn.forms import ResetPasswordForm
from ..authn.sessions import current_session, end_session
from ..db import get_db
from ..mail import link_for, send_mail
from .account.links import link_invalid, no_store

bp = Blueprint("claim_address", __name__)


@bp.after_request
def _token_pages_are_not_kept(response: Response) -> Response:
    if request.endpoint in ("claim_address.claim_form", "claim_address.claim"):
        return no_store(response)
    return response


@bp.get("/claim-address/<path:token>")
def claim_form(token: str) -> ResponseReturnValue:
    if usable_claim(get_db(), token) is None:
        return link_invalid("claim")
    return render_template("authn/claim_address.html", form=ResetPasswordForm(), token=token)


@bp.post("/claim-address/<path:token>")
def claim(token: str) -> ResponseReturnValue:
    db = get_db()
    found = usable_claim(db, token)
    if found is None:
        return link_invalid("claim")
    form = ResetPasswordForm()
    form.user_email = found.user.email
    form.user_name = None  # the squatter chose the account's name: nothing to compare with
    if not form.validate_on_submit():
        return render_template("authn/claim_address.html", form=form, token=token), 422

    this_browser = current_session()
    if this_browser is not None and this_browser.user_id == found.user_id:
        end_session()  # and clear this browser's cookie too, not just the row
        db.flush()
    claimed = claim_address(db, token, form.new_password.data or "")
    if claimed is None:  # the other of two simultaneous claims won
        db.rollback()
        return link_invalid("claim")
    user, removed = claimed
    db.commit()
    send_mail(
        user.email,
        "You claimed your email address on InvoiceApp",
        "address_claimed",
        removed_passkeys=removed.passkeys,
        removed_totp=removed.totp,
        security_url=link_for("account.security"),
        reset_url=link_for("recovery.forgot_password_form"),
    )
    session.clear()
    flash(
        "The address is yours: it is verified, the password is the one you just chose, and "
        "everyone who was signed in to the account has been signed out. Sign in now.",
        "success",
    )
    return redirect(url_for("authn.sign_in_form"), code=303)
