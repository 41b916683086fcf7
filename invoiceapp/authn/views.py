"""Sign-in, sign-out and re-authentication: the pages where identity is proven."""

from __future__ import annotations

import flask_login
from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from ..db import get_db
from ..extensions import limiter
from ..models import User
from ..principal import require_principal
from .forms import EmptyForm, ReauthenticateForm, SignInForm, normalise_email
from .gate import WWW_AUTHENTICATE, login_required
from .passwords import hash_password, needs_rehash, verify_password
from .redirects import next_or_default, safe_next
from .sessions import end_session, mark_reauthenticated, start_session

bp = Blueprint("authn", __name__)

# One message for an unknown email and a wrong password: the answer must not
# tell anyone which addresses have accounts.
SIGN_IN_FAILED = "That email and password do not match an account."


def _sign_in_limit() -> str:
    return current_app.config["SIGN_IN_RATE_LIMIT"]


def _account_limit() -> str:
    return current_app.config["SIGN_IN_ACCOUNT_RATE_LIMIT"]


def _claimed_account() -> str:
    return "account:" + normalise_email(request.form.get("email"))[:320]


def _failed(response: Response) -> bool:
    return response.status_code == 401


@bp.get("/sign-in")
def sign_in_form() -> ResponseReturnValue:
    if flask_login.current_user.is_authenticated:
        return redirect(next_or_default(request.args.get("next")), code=303)
    form = SignInForm(next=safe_next(request.args.get("next")) or "")
    return render_template("authn/sign_in.html", form=form)


@bp.post("/sign-in")
@limiter.limit(_sign_in_limit)
@limiter.limit(_account_limit, key_func=_claimed_account, deduct_when=_failed)
def sign_in() -> ResponseReturnValue:
    form = SignInForm()
    if not form.validate_on_submit():
        return render_template("authn/sign_in.html", form=form), 422

    # Identification: the email names a claimed account, nothing more.
    user = get_db().scalar(select(User).where(User.email == form.email.data))
    # Authentication: only the password turns the claim into a principal.
    # An unknown email still pays for one hash check (see verify_password).
    if not verify_password(user.password_hash if user else None, form.password.data or ""):
        form.password.data = ""
        html = render_template("authn/sign_in.html", form=form, failure=SIGN_IN_FAILED)
        return html, 401, {"WWW-Authenticate": WWW_AUTHENTICATE}
    assert user is not None

    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(form.password.data or "")
    # A new session id at every sign-in, and a new CSRF token with it (no fixation).
    session.clear()
    start_session(user, remember=bool(form.remember.data))
    get_db().commit()
    flash(f"Signed in as {user.display_name}.", "success")
    return redirect(next_or_default(form.next.data), code=303)


@bp.get("/sign-out")
def sign_out_confirm() -> ResponseReturnValue:
    """Signing out changes state, so it is a POST; this page only holds the button."""
    if not flask_login.current_user.is_authenticated:
        return redirect("/", code=303)
    return render_template("authn/sign_out.html", form=EmptyForm())


@bp.post("/sign-out")
@login_required
def sign_out() -> ResponseReturnValue:
    end_session()
    get_db().commit()
    session.clear()
    flash("You have signed out.", "info")
    return redirect("/", code=303)


@bp.get("/reauthenticate")
@login_required
def reauthenticate_form() -> ResponseReturnValue:
    form = ReauthenticateForm(next=safe_next(request.args.get("next")) or "")
    return render_template("authn/reauthenticate.html", form=form)


@bp.post("/reauthenticate")
@login_required
@limiter.limit(_sign_in_limit)
def reauthenticate() -> ResponseReturnValue:
    """Fresh proof of identity: authorization asked for it, authentication supplies it."""
    principal = require_principal()
    form = ReauthenticateForm()
    if not form.validate_on_submit():
        return render_template("authn/reauthenticate.html", form=form), 422
    if not verify_password(principal.user.password_hash, form.password.data or ""):
        form.password.errors.append("That password is not right.")
        return render_template("authn/reauthenticate.html", form=form), 422
    mark_reauthenticated()
    get_db().commit()
    session.pop("csrf_token", None)  # a new privilege level gets a new CSRF token too
    flash("Thanks. You can make sensitive changes for the next few minutes.", "success")
    return redirect(next_or_default(form.next.data), code=303)
