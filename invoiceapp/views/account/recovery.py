"""Password recovery: a forgotten password is replaced through a link mailed to the account.

Two rules shape this module:

- /forgot-password never tells whether an address has an account, or whether it is
  verified. Every request gets the same page, status and flash, built before anything
  is looked up; the look-up, the token and the mail run after the response has been
  sent, on a background thread (invoiceapp.background), so neither the answer, nor its
  timing, nor how soon the worker takes the next request depends on them. A verified
  address is sent a reset link; an unverified one a claim link (invoiceapp.authn.claims).
  (The tests run that work inline, when the test closes the response.)
- A reset link works once and briefly. Using it replaces the password and ends every
  session of the account, so whoever knew the old password or held a cookie is out.
  It does not sign anyone in: the new password (and any second factor) still has to.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import (
    Blueprint,
    copy_current_request_context,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from ...authn.accounts import set_password
from ...authn.claims import send_claim_link
from ...authn.counters import clear_code_failures
from ...authn.devices import trust_browser_after_reset
from ...authn.emails import normalise_new_email
from ...authn.events import EventKind, record_event
from ...authn.factors import remove_second_factors
from ...authn.forms import ResetPasswordForm, normalise_email
from ...authn.sessions import current_session, end_session
from ...authn.tokens import claim_token, find_usable_token, is_newest, issue_token, revoke_tokens
from ...background import after_response
from ...db import get_db
from ...extensions import limiter
from ...forms import Form, no_control_characters
from ...mail import duration_in_words, link_for, send_mail
from ...models import AccountToken, TokenPurpose, User
from .links import link_invalid, no_store

bp = Blueprint("recovery", __name__)

MAX_EMAIL_INPUT = 320


def reset_requested_message() -> str:
    """The one answer to every forgot-password request, whatever the address."""
    lifetime = duration_in_words(current_app.config["RESET_TOKEN_SECONDS"])
    return (
        "If that address belongs to an account, we have sent it a link to choose a new "
        f"password. The link works once, for {lifetime}."
    )


def asked_about(raw: str | None) -> str:
    """The address as accounts store it; what is not a valid address is only lower-cased.

    It never fails: refusing some spellings and not others would be a signal of its own.
    """
    text = (raw or "").strip()[:MAX_EMAIL_INPUT]
    try:
        return normalise_new_email(text)
    except ValueError:
        return normalise_email(text)


# ---------------------------------------------------------------------------
# Forms
# ---------------------------------------------------------------------------


class ForgotPasswordForm(Form):
    email = StringField(
        "Email",
        filters=[lambda value: value.strip() if isinstance(value, str) else value],
        validators=[
            DataRequired("Enter your email address."),
            Length(max=MAX_EMAIL_INPUT),
            no_control_characters,
        ],
        render_kw={"autocomplete": "email", "type": "email", "autofocus": True},
    )


# ---------------------------------------------------------------------------
# Forgot password
# ---------------------------------------------------------------------------


def _per_client_limit() -> str:
    return current_app.config["FORGOT_PASSWORD_RATE_LIMIT"]


def _per_email_limit() -> str:
    return current_app.config["FORGOT_PASSWORD_EMAIL_RATE_LIMIT"]


def _asked_address_key() -> str:
    # Many addresses from one client, or one address from many clients: both are limited.
    return "forgot-email:" + asked_about(request.form.get("email"))


@bp.get("/forgot-password")
def forgot_password_form() -> ResponseReturnValue:
    return render_template("authn/forgot_password.html", form=ForgotPasswordForm())


@bp.post("/forgot-password")
@limiter.limit(_per_client_limit)
@limiter.limit(_per_email_limit, key_func=_asked_address_key)
def forgot_password() -> ResponseReturnValue:
    form = ForgotPasswordForm()
    if not form.validate_on_submit():
        return render_template("authn/forgot_password.html", form=form), 422

    flash(reset_requested_message(), "info")
    # A fresh, empty form: echoing the address would make the pages differ by input.
    html = render_template("authn/forgot_password.html", form=ForgotPasswordForm(formdata=None))
    response = make_response(html)
    # The look-up, the event, the token and the mail all happen once the answer has
    # been sent, off this worker, so no timing can depend on them.
    after_response(response, _after_the_answer(asked_about(form.email.data)))
    return response


def _after_the_answer(address: str) -> Callable[[], None]:
    """The work of a reset request, to run once the answer has been sent."""

    @copy_current_request_context
    def work() -> None:
        try:
            send_recovery_link(address)
        except Exception as error:  # nobody is waiting for an answer any more
            # The class only: database errors quote their parameters, the address among them.
            current_app.logger.warning("password reset request failed: %s", type(error).__name__)

    return work


def send_recovery_link(address: str) -> None:
    """Record the request for an existing account and mail its address a link: a reset
    link when the address is verified, else a claim link (invoiceapp.authn.claims), so
    whoever reads the mailbox can take the address back from whoever signed up with it."""
    db = get_db()
    user = db.scalar(select(User).where(User.email == address))
    if user is None:
        return
    record_event(db, user.id, EventKind.RESET_REQUESTED)
    if not user.email_verified:
        send_claim_link(db, user)
        return
    lifetime = current_app.config["RESET_TOKEN_SECONDS"]
    # A new link kills the older ones: only the newest mail in the inbox works.
    revoke_tokens(db, user.id, TokenPurpose.RESET_PASSWORD)
    raw = issue_token(db, user, TokenPurpose.RESET_PASSWORD, lifetime, email=user.email)
    db.commit()  # the token exists before the mail that names it leaves
    send_mail(
        user.email,
        "Reset your InvoiceApp password",
        "reset_password",
        reset_url=link_for("recovery.reset_password_form", token=raw),
        expires_in=duration_in_words(lifetime),
    )


# ---------------------------------------------------------------------------
# Reset password
# ---------------------------------------------------------------------------


def _usable_reset_token(db: Session, raw: str) -> AccountToken | None:
    """The token if it can still reset a password: usable, the newest link mailed for the
    account, and for the address the account still has."""
    token = find_usable_token(db, raw, TokenPurpose.RESET_PASSWORD)
    if token is None or token.email != token.user.email or not is_newest(db, token):
        return None
    return token


@bp.after_request
def _token_pages_are_not_kept(response: Response) -> Response:
    if request.endpoint in ("recovery.reset_password_form", "recovery.reset_password"):
        return no_store(response)
    return response


@bp.get("/reset-password/<path:token>")
def reset_password_form(token: str) -> ResponseReturnValue:
    if _usable_reset_token(get_db(), token) is None:
        return link_invalid("reset")
    return render_template("authn/reset_password.html", form=ResetPasswordForm(), token=token)


@bp.post("/reset-password/<path:token>")
def reset_password(token: str) -> ResponseReturnValue:
    db = get_db()
    found = _usable_reset_token(db, token)
    if found is None:
        return link_invalid("reset")
    user = found.user
    form = ResetPasswordForm()
    form.user_email = user.email
    form.user_name = user.display_name
    if not form.validate_on_submit():
        return render_template("authn/reset_password.html", form=form, token=token), 422

    # The atomic claim decides: of two simultaneous submits, one changes the password.
    if claim_token(db, token, TokenPurpose.RESET_PASSWORD) is None:
        db.rollback()
        return link_invalid("reset")
    this_browser = current_session()
    if this_browser is not None and this_browser.user_id == user.id:
        end_session()  # and clear this browser's cookie too, not just the row
        db.flush()
    set_password(db, user, form.new_password.data or "", keep=None)
    # The reset starts the sign-in methods over (invoiceapp.authn.factors says why).
    removed = remove_second_factors(db, user, "by a password reset")
    clear_code_failures(db, user)  # codes locked by wrong guesses work again
    record_event(db, user.id, EventKind.RESET_USED)
    db.commit()
    send_mail(
        user.email,
        "Your InvoiceApp password was changed",
        "password_was_reset",
        reset_url=link_for("recovery.forgot_password_form"),
        removed_passkeys=removed.passkeys,
        passkeys_url=link_for("two_factor.passkeys_page"),
        removed_totp=removed.totp,
        two_factor_url=link_for("two_factor.two_factor_page"),
    )
    session.clear()
    flash(
        "Your password has been changed and every session of your account was signed out. "
        "Sign in with your new password.",
        "success",
    )
    response = redirect(url_for("authn.sign_in_form"), code=303)
    trust_browser_after_reset(response, user.email)
    return response
