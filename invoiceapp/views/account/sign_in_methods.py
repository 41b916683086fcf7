"""/account/security, "How you sign in": this session's proof, and the methods the account
chooses (invoiceapp.authn.sign_in_methods holds the rule that keeps a way in).

Turning a method off is a self-service action like changing the password
(account.sign_in_methods.change: elevated, with the second factor when one is enrolled),
so a stolen session cannot lock the owner out. Every change is a security event and a
mail to the account's address.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Response, flash, make_response, redirect, request, url_for
from flask.typing import ResponseReturnValue

from ...authn.gate import login_required
from ...authn.sign_in_methods import (
    MethodRefused,
    describe_proof,
    passkey_count,
    set_email_sign_in,
    set_password_sign_in,
)
from ...authz.enforce import ReauthenticationRequired, authorize
from ...db import get_db
from ...mail import link_for, send_mail
from ...principal import Principal, current_principal, require_principal
from .settings import security as security_page

bp = Blueprint("sign_in_methods", __name__)

ACTION = "account.sign_in_methods.change"
PAGE = "/account/security"
METHODS = {"password": set_password_sign_in, "email": set_email_sign_in}
NAMES = {"password": "Password sign-in", "email": "Sign-in by email (codes and links)"}


@dataclass(frozen=True)
class SignInMethods:
    """What the security page shows under "How you sign in"."""

    proof: str  # this session's, in words
    password: bool
    email: bool
    email_verified: bool
    passkeys: int


@bp.app_template_global("sign_in_methods")
def sign_in_methods() -> SignInMethods | None:
    principal: Principal | None = current_principal()
    if principal is None:
        return None
    user = principal.user
    return SignInMethods(
        proof=describe_proof(principal.proof),
        password=user.password_sign_in,
        email=user.email_sign_in,
        email_verified=user.email_verified,
        passkeys=passkey_count(get_db(), user),
    )


def _security_page_with(status: int) -> Response:
    response = make_response(security_page())
    response.status_code = status
    return response


@bp.post("/account/security/sign-in-methods")
@login_required
def change() -> ResponseReturnValue:
    """Fields ``method`` (password or email) and ``enabled`` (on or off)."""
    user = require_principal().user
    method, enabled = request.form.get("method", ""), request.form.get("enabled", "")
    if method not in METHODS or enabled not in ("on", "off"):
        flash("Choose a sign-in method to turn on or off.", "error")
        return _security_page_with(400)
    try:
        authorize(ACTION, user)
    except ReauthenticationRequired as needed:
        # Back to the page (a GET) after the proof, not to this POST-only URL.
        raise ReauthenticationRequired(PAGE, second_factor=needed.second_factor) from None
    db = get_db()
    try:
        METHODS[method](db, user, enabled == "on")
    except MethodRefused as refused:
        db.rollback()
        flash(str(refused), "error")
        return _security_page_with(409)  # nothing changed: the page says why
    db.commit()
    change = f"{NAMES[method]} was turned {enabled}."
    send_mail(
        user.email,
        "How you sign in to InvoiceApp changed",
        "second_factor_changed",
        name=user.display_name,
        change=change,
        security_url=link_for("account.security"),
        reset_url=link_for("recovery.forgot_password_form"),
        passkeys_url=link_for("two_factor.passkeys_page"),
    )
    flash(change, "success")
    return redirect(url_for("account.security"), code=303)
