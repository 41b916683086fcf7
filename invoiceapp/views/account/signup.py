"""Sign-up and email verification: a new account, and the proof that its address answers.

Signing up must not tell anyone which addresses already have accounts. So an address
that is taken gets exactly the answer a new one gets (same status, same redirect, same
flash, same cookies) and costs about the same work; the address is told by mail
instead (a notice, or a claim link when its account never verified it: see claims.py).
That is also why sign-up signs nobody in: a session cookie for new addresses only would
give the answer away. The new account holder signs in as usual.

Verification is a single-use link mailed to the address. It is valid only for the
address the account still has: a link mailed before an email change verifies nothing.
Opening it shows a button; only the button (a POST) verifies, so a mail scanner that
opens the link spends nothing.
"""

from __future__ import annotations

import flask_login
from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, InputRequired, Length

from ...authn.claims import send_claim_link
from ...authn.emails import valid_new_email
from ...authn.events import EventKind, record_event
from ...authn.gate import login_required
from ...authn.password_policy import StrongPassword
from ...authn.passwords import hash_password
from ...authn.tokens import claim_token, find_usable_token, issue_token, revoke_tokens
from ...db import get_db, utcnow
from ...extensions import limiter, outage_safe_key
from ...forms import Form, no_control_characters, strip
from ...mail import duration_in_words, link_for, send_mail
from ...models import AccountToken, Membership, Organization, Plan, Role, TokenPurpose, User
from ...organizations import SLUG_ATTEMPTS, unique_slug
from ...principal import require_principal
from .links import link_invalid, no_store, one_button_page

bp = Blueprint("signup", __name__)

# The one answer to every accepted sign-up, new address or taken. It must not say
# "welcome" or name anything only a new account would have.
CHECK_YOUR_INBOX = (
    "Thanks for signing up. Check your inbox: we have sent you an email with the next step. "
    "You can sign in now."
)

MAX_NAME_LENGTH = 100


def send_verification_mail(db: Session, user: User) -> None:
    """Issue a verification link for the user's current address and mail it.

    The token is committed before the mail leaves, so the link in it always works.
    """
    lifetime = current_app.config["VERIFY_EMAIL_SECONDS"]
    raw = issue_token(db, user, TokenPurpose.VERIFY_EMAIL, lifetime, email=user.email)
    db.commit()
    send_mail(
        user.email,
        "Please verify your email address",
        "verify_email",
        verify_url=link_for("signup.verify_email_form", token=raw),
        expires_in=duration_in_words(lifetime),
    )


# ---------------------------------------------------------------------------
# The form
# ---------------------------------------------------------------------------


class SignUpForm(Form):
    name = StringField(
        "Your name",
        filters=[strip],
        validators=[
            DataRequired("Enter your name."),
            Length(max=MAX_NAME_LENGTH, message=f"Use at most {MAX_NAME_LENGTH} characters."),
            no_control_characters,
        ],
        render_kw={"autocomplete": "name", "autofocus": True},
    )
    email = StringField(
        "Email",
        validators=[DataRequired("Enter your email address."), valid_new_email],
        render_kw={"autocomplete": "email", "type": "email"},
    )
    password = PasswordField(
        "Password",
        # InputRequired, not DataRequired: a password may contain (even start with) spaces.
        validators=[
            InputRequired("Choose a password."),
            StrongPassword(email_field="email", name_field="name"),
        ],
        render_kw={"autocomplete": "new-password"},
    )
    organization_name = StringField(
        "Organization name",
        filters=[strip],
        validators=[
            DataRequired("Enter your organization's name."),
            Length(max=MAX_NAME_LENGTH, message=f"Use at most {MAX_NAME_LENGTH} characters."),
            no_control_characters,
        ],
        render_kw={"autocomplete": "organization"},
    )


# ---------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------


def _sign_up_limit() -> str:
    return current_app.config["SIGN_UP_RATE_LIMIT"]


@bp.get("/sign-up")
def sign_up_form() -> ResponseReturnValue:
    if flask_login.current_user.is_authenticated:
        return redirect(url_for("pages.dashboard"), code=303)
    return render_template("authn/sign_up.html", form=SignUpForm())


@bp.post("/sign-up")
@limiter.limit(_sign_up_limit)
def sign_up() -> ResponseReturnValue:
    if flask_login.current_user.is_authenticated:
        return redirect(url_for("pages.dashboard"), code=303)
    form = SignUpForm()
    if not form.validate_on_submit():
        return render_template("authn/sign_up.html", form=form), 422

    # Hashed in both branches, new address or taken: the time taken tells nothing.
    password_hash = hash_password(form.password.data or "")
    db = get_db()
    user = _create_account(db, form, password_hash)
    # The same fresh Flask session in both branches (a new CSRF token, no old flashes).
    session.clear()
    if user is None:
        _tell_the_address(db, form.email.data or "")
    else:
        send_verification_mail(db, user)
        db.commit()
    flash(CHECK_YOUR_INBOX, "info")
    return redirect(url_for("authn.sign_in_form"), code=303)


def _create_account(db: Session, form: SignUpForm, password_hash: str) -> User | None:
    """The new user, owner of a new free organization; None when the address is taken.

    The unique email constraint decides, so a double submit creates one account.
    """
    email = form.email.data or ""
    for _attempt in range(SLUG_ATTEMPTS):
        if db.scalar(select(User.id).where(User.email == email)) is not None:
            return None
        user = User(email=email, display_name=form.name.data or "", password_hash=password_hash)
        organization = Organization(
            slug=unique_slug(db, form.organization_name.data or ""),
            name=form.organization_name.data or "",
            plan=Plan.FREE.value,
        )
        db.add_all([user, organization])
        try:
            db.flush()
            db.add(
                Membership(user_id=user.id, organization_id=organization.id, role=Role.OWNER.value)
            )
            record_event(db, user.id, EventKind.SIGNED_UP)
            db.commit()
        except IntegrityError:
            # Someone else took the address (or the slug) a moment ago. Look again.
            db.rollback()
            continue
        return user
    raise RuntimeError("could not find a free organization slug")  # pragma: no cover


def _tell_the_address(db: Session, email: str) -> None:
    """Someone signed up with an address that has an account: tell its owner, sign nobody in.

    An account that never verified the address may not be its owner's at all: then the
    mail is a claim link (invoiceapp.authn.claims), so the mailbox owner can take it back.
    Nothing the form carried goes into the mail: whoever typed it may not be the owner.
    """
    holder = db.scalar(select(User).where(User.email == email))
    if holder is not None and not holder.email_verified:
        send_claim_link(db, holder)
        return
    send_mail(
        email,
        "Someone tried to sign up with your email address",
        "account_exists",
        sign_in_url=link_for("authn.sign_in_form"),
        reset_url=link_for("recovery.forgot_password_form"),
    )


def _usable_verify_link(db: Session, raw: str) -> AccountToken | None:
    """The verification link if it still works, for the address the account still has."""
    token = find_usable_token(db, raw, TokenPurpose.VERIFY_EMAIL)
    if token is None or token.email != token.user.email:
        return None
    return token


@bp.get("/verify-email/<path:token>")
def verify_email_form(token: str) -> ResponseReturnValue:
    """The link from the mail shows a button and changes nothing: scanners open links."""
    if _usable_verify_link(get_db(), token) is None:
        return link_invalid("verify")
    return one_button_page(
        title="Verify your email address",
        explanation="Press the button to confirm that this address is yours. Once it is "
        "verified, password-reset links can be sent to it if you ever need one.",
        button="Verify my email address",
        endpoint="signup.verify_email",
        token=token,
    )


@bp.post("/verify-email/<path:token>")
def verify_email(token: str) -> ResponseReturnValue:
    """The button: marks the address verified and uses the link up."""
    db = get_db()
    claimed = claim_token(db, token, TokenPurpose.VERIFY_EMAIL)
    if claimed is None or claimed.email != claimed.user.email:
        db.rollback()
        return link_invalid("verify")
    user = claimed.user
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        record_event(db, user.id, EventKind.EMAIL_VERIFIED)
    # Other links mailed for this address have nothing left to prove.
    revoke_tokens(db, user.id, TokenPurpose.VERIFY_EMAIL)
    db.commit()
    signed_in = flask_login.current_user.is_authenticated
    return render_template("authn/verify_email_done.html", signed_in=signed_in)


@bp.after_request
def _token_pages_are_not_kept(response: Response) -> Response:
    if request.endpoint in ("signup.verify_email_form", "signup.verify_email"):
        return no_store(response)
    return response


def _resend_limit() -> str:
    return current_app.config["VERIFY_RESEND_RATE_LIMIT"]


@outage_safe_key
def _resending_account() -> str:
    return f"verify-resend:{flask_login.current_user.get_id()}"


@bp.post("/account/verify-email/resend")
@login_required
@limiter.limit(_resend_limit, key_func=_resending_account)
def resend_verification() -> ResponseReturnValue:
    """A fresh link for a signed-in user whose address is not verified yet."""
    user = require_principal().user
    if user.email_verified:
        flash("Your email address is already verified.", "info")
    else:
        send_verification_mail(get_db(), user)
        flash("We have sent you a new verification link. It may take a minute to arrive.", "info")
    return redirect(url_for("pages.dashboard"), code=303)
