"""Sign-in, sign-out and re-authentication: the pages where identity is proven."""

from __future__ import annotations

import flask_login
from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
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
from .devices import issue_device_cookie, trusted_device_for
from .events import EventKind, record_event
from .forms import EmptyForm, ReauthenticateForm, SignInForm, normalise_email
from .gate import WWW_AUTHENTICATE, login_required
from .passwords import hash_password, needs_rehash, verify_password
from .redirects import next_or_default, safe_next
from .sessions import current_session, end_session, mark_reauthenticated, start_session

bp = Blueprint("authn", __name__)

# One message for an unknown email and a wrong password: the answer must not
# tell anyone which addresses have accounts.
SIGN_IN_FAILED = "That email and password do not match an account."


def _sign_in_limit() -> str:
    return current_app.config["SIGN_IN_RATE_LIMIT"]


def _account_limit() -> str:
    return current_app.config["SIGN_IN_ACCOUNT_RATE_LIMIT"]


def _claimed_account() -> str:
    """Failed sign-ins are counted per account and per kind of client (see devices.py)."""
    email = normalise_email(request.form.get("email"))[:320]
    device = trusted_device_for(email)
    return f"account:{email}:" + (f"device:{device}" if device else "untrusted")


def _failed(response: Response) -> bool:
    return response.status_code == 401


# A wrong password at /reauthenticate: the form is fine, the proof is not (422, like any
# form error, so the browser stays on the page; the limiter counts only these).
WRONG_PASSWORD = 422


def _wrong_password(response: Response) -> bool:
    return response.status_code == WRONG_PASSWORD and getattr(g, "wrong_password", False)


@bp.get("/sign-in")
def sign_in_form() -> ResponseReturnValue:
    if flask_login.current_user.is_authenticated:
        return redirect(next_or_default(request.args.get("next")), code=303)
    form = SignInForm(next=safe_next(request.args.get("next")) or "")
    return render_template("authn/sign_in.html", form=form)


@bp.post("/sign-in")
# Only failures count, per address: a classroom behind one address signs in freely.
@limiter.limit(_sign_in_limit, deduct_when=_failed)
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
        if user is not None:
            record_event(get_db(), user.id, EventKind.SIGN_IN_FAILED)
            get_db().commit()
        form.password.data = ""
        html = render_template("authn/sign_in.html", form=form, failure=SIGN_IN_FAILED)
        return html, 401, {"WWW-Authenticate": WWW_AUTHENTICATE}
    assert user is not None

    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(form.password.data or "")
    # A new session id at every sign-in, and a new CSRF token with it (no fixation).
    session.clear()
    start_session(user, remember=bool(form.remember.data))
    record_event(get_db(), user.id, EventKind.SIGN_IN_SUCCEEDED)
    get_db().commit()
    flash("You are signed in.", "success")  # no names: flashes travel in a readable cookie
    response = redirect(next_or_default(form.next.data), code=303)
    issue_device_cookie(response, user.email)
    return response


@bp.get("/sign-out")
def sign_out_confirm() -> ResponseReturnValue:
    """Signing out changes state, so it is a POST; this page only holds the button."""
    if not flask_login.current_user.is_authenticated:
        return redirect("/", code=303)
    return render_template("authn/sign_out.html", form=EmptyForm())


@bp.post("/sign-out")
def sign_out() -> ResponseReturnValue:
    """Public on purpose: a stale tab's button lands on "/" saying you are signed out.

    With a live session it is CSRF-protected like every post (invoiceapp.gates).
    """
    auth_session = current_session()
    if auth_session is not None:
        record_event(get_db(), auth_session.user_id, EventKind.SIGNED_OUT)
    end_session()
    get_db().commit()
    session.clear()
    flash("You have signed out.", "info")
    return redirect("/", code=303)


def _end_session_after_guessing() -> ResponseReturnValue:
    """Too many wrong passwords in one session: whoever holds it must sign in afresh."""
    end_session()
    get_db().commit()
    session.clear()
    flash(
        "That was too many wrong passwords, so this session was ended to protect your "
        "account. Please sign in again.",
        "error",
    )
    return redirect("/sign-in", code=303)


@bp.get("/reauthenticate")
@login_required
def reauthenticate_form() -> ResponseReturnValue:
    form = ReauthenticateForm(next=safe_next(request.args.get("next")) or "")
    return render_template("authn/reauthenticate.html", form=form)


def _reauth_account_limit() -> str:
    return current_app.config["REAUTH_ACCOUNT_RATE_LIMIT"]


def _reauthenticating_account() -> str:
    return f"reauth-account:{flask_login.current_user.get_id()}"


@bp.post("/reauthenticate")
@login_required
@limiter.limit(_sign_in_limit)
@limiter.limit(
    _reauth_account_limit, key_func=_reauthenticating_account, deduct_when=_wrong_password
)
def reauthenticate() -> ResponseReturnValue:
    """Fresh proof of identity: authorization asked for it, authentication supplies it.

    Whoever holds a stolen cookie could guess here, so wrong passwords are limited per
    account (any session), and a session that guesses REAUTH_MAX_FAILURES times is ended.
    """
    principal = require_principal()
    form = ReauthenticateForm()
    if not form.validate_on_submit():
        return render_template("authn/reauthenticate.html", form=form), 422
    auth_session = principal.session
    if not verify_password(principal.user.password_hash, form.password.data or ""):
        if auth_session is not None:
            auth_session.failed_reauthentications += 1
            record_event(get_db(), principal.user.id, EventKind.REAUTHENTICATION_FAILED)
            if auth_session.failed_reauthentications >= current_app.config["REAUTH_MAX_FAILURES"]:
                return _end_session_after_guessing()
            get_db().commit()
        g.wrong_password = True
        form.password.errors.append("That password is not right.")
        return render_template("authn/reauthenticate.html", form=form), WRONG_PASSWORD
    if auth_session is not None:
        auth_session.failed_reauthentications = 0
    mark_reauthenticated()
    record_event(get_db(), principal.user.id, EventKind.ELEVATION_GRANTED)
    get_db().commit()
    session.pop("csrf_token", None)  # a new privilege level gets a new CSRF token too
    flash("Thanks. You can make sensitive changes for the next few minutes.", "success")
    return redirect(next_or_default(form.next.data), code=303)
