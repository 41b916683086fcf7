"""Account pages: your profile, password, sessions, security events and email address.

Everything here acts on the principal's own account, so there is no scope lookup: the
user *is* the resource. The sensitive changes (password, email) still go through the
policy, whose rule for them is "self, elevated": the same authorize() call that guards
billing sends a stale session to /reauthenticate first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

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
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, ValidationError

from ...authn.accounts import revoke_sessions, set_password
from ...authn.emails import MAX_EMAIL_LENGTH, valid_new_email
from ...authn.events import DESCRIPTIONS, EventKind, record_event
from ...authn.forms import WithinPasswordMaxLength
from ...authn.gate import login_required
from ...authn.mailed_sign_in import revoke_pending
from ...authn.password_policy import StrongPassword
from ...authn.passwords import verify_password
from ...authn.redirects import safe_next
from ...authn.second_factor import factors_added_without_second_factor
from ...authn.sessions import (
    _lifetimes,  # the one definition of "expired", shared with the cookie lookup
    end_session,
    is_fresh,
    mark_reauthenticated,
)
from ...authn.tokens import claim_token, find_usable_token, issue_token, revoke_tokens
from ...authz.enforce import authorize
from ...db import get_db, utcnow
from ...extensions import failures_limit, outage_safe_key
from ...forms import Form, add_error
from ...mail import link_for, send_mail
from ...models import AccountToken, SecurityEvent, TokenPurpose, User, UserSession
from ...path_ids import path_id_or_404
from ...principal import Principal, require_principal
from ...user_agents import describe_user_agent
from ..paging import page_number
from .links import no_store, one_button_page

bp = Blueprint("account", __name__, url_prefix="/account")

EVENTS_PER_PAGE = 25
# The same answer whether or not another account already uses the address.
EMAIL_CHANGE_REQUESTED = (
    "Check the new inbox: we sent a confirmation link there. "
    "Until you open it, your current address stays in effect."
)


# ---------------------------------------------------------------------------
# Forms
# ---------------------------------------------------------------------------


class ChangePasswordForm(Form):
    """Field names are public (CONTRACT §8): password managers and scripts rely on them."""

    current_password = PasswordField(
        "Current password",
        validators=[
            DataRequired("Enter your current password."),
            WithinPasswordMaxLength(),
        ],
        render_kw={"autocomplete": "current-password"},
    )
    # The view sets user_email / user_name, so the policy can refuse passwords built
    # from them without the form having those fields.
    new_password = PasswordField(
        "New password",
        validators=[
            DataRequired("Choose a new password."),
            StrongPassword(email_field=None, name_field=None),
        ],
        render_kw={"autocomplete": "new-password"},
    )
    confirm_password = PasswordField(
        "Repeat the new password",
        validators=[
            DataRequired("Type the new password a second time."),
            EqualTo("new_password", "The two new passwords are not the same."),
        ],
        render_kw={"autocomplete": "new-password"},
    )

    user_email: str | None = None
    user_name: str | None = None


class ChangeEmailForm(Form):
    email = StringField(
        "New email address",
        validators=[DataRequired("Enter the new address."), valid_new_email],
        render_kw={
            "autocomplete": "email",
            "type": "email",
            "maxlength": MAX_EMAIL_LENGTH,
            "autofocus": True,
        },
    )

    current_email: str = ""

    def validate_email(self, field: StringField) -> None:
        if field.data == self.current_email:
            raise ValidationError("That is already your email address.")


# ---------------------------------------------------------------------------
# Profile
# ---------------------------------------------------------------------------


@bp.get("")
@login_required
def index() -> ResponseReturnValue:
    return render_template("account/index.html", user=require_principal().user)


# ---------------------------------------------------------------------------
# Password
# ---------------------------------------------------------------------------


def _password_form(user: User) -> ChangePasswordForm:
    form = ChangePasswordForm()
    form.user_email = user.email
    form.user_name = user.display_name
    return form


def _render_password(form: ChangePasswordForm, status: int = 200) -> ResponseReturnValue:
    min_length = current_app.config["PASSWORD_MIN_LENGTH"]
    recent = factors_added_without_second_factor(require_principal().user)
    page = render_template(
        "account/password.html", form=form, min_length=min_length, recent_factors=recent
    )
    return page, status


@bp.get("/password")
@login_required
def password_form() -> ResponseReturnValue:
    authorize("account.password.change", require_principal().user)
    return _render_password(_password_form(require_principal().user))


@bp.post("/password")
@login_required
def change_password() -> ResponseReturnValue:
    """A new password ends every other session: whoever knew the old one is out."""
    authorize("account.password.change", require_principal().user)
    principal = require_principal()
    user = principal.user
    form = _password_form(user)
    valid = form.validate_on_submit()
    # Checked even when other fields failed, so every problem shows at once. The session
    # is elevated (a password was typed minutes ago), so this is not a guessing oracle.
    if form.current_password.data and not verify_password(
        user.password_hash, form.current_password.data
    ):
        add_error(form.current_password, "That is not your current password.")
        valid = False
    elif valid and verify_password(user.password_hash, form.new_password.data or ""):
        add_error(form.new_password, "Choose a password different from your current one.")
        valid = False
    if not valid:
        for field in (form.current_password, form.new_password, form.confirm_password):
            field.data = ""  # never echo a password back into the page
        return _render_password(form, 422)

    db = get_db()
    set_password(db, user, form.new_password.data or "", keep=principal.session)
    # A pending email change could hand the account to whoever asked for it; it dies
    # with the password it was asked under.
    revoke_tokens(db, user.id, TokenPurpose.CHANGE_EMAIL)
    # This browser stays signed in, with a new cookie token and a new CSRF token: a copy
    # of the old cookie is worthless now.
    mark_reauthenticated()
    session.pop("csrf_token", None)
    record_event(db, user.id, EventKind.PASSWORD_CHANGED)
    db.commit()
    # After the commit: the mail must not announce a change that did not happen.
    send_mail(
        user.email,
        "Your InvoiceApp password was changed",
        "password_changed",
        name=user.display_name,
        reset_url=link_for("recovery.forgot_password_form"),
        sessions_url=link_for("account.sessions"),
        # Factors set up lately without a second factor may be a thief's: the mail names
        # them, and a password reset removes them.
        recent_factors=factors_added_without_second_factor(user),
    )
    flash("Your password was changed. Every other session was signed out.", "success")
    return redirect(url_for("account.index"), code=303)


# ---------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRow:
    """What the sessions page shows about one signed-in browser."""

    public_id: str
    device: str
    ip_address: str | None
    created_at: datetime
    last_seen_at: datetime
    remember: bool
    current: bool


def _live_sessions(principal: Principal) -> list[UserSession]:
    """The user's sessions that still sign a browser in, most recently used first.

    Expired rows linger until `flask prune-sessions`; they sign nobody in, so they are
    not shown.
    """
    now = utcnow()
    rows = get_db().scalars(
        select(UserSession)
        .where(UserSession.user_id == principal.user.id)
        .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
    )
    live = []
    for row in rows:
        idle, absolute = _lifetimes(row)
        if now - row.last_seen_at <= idle and now - row.created_at <= absolute:
            live.append(row)
    return live


@bp.get("/sessions")
@login_required
def sessions() -> ResponseReturnValue:
    principal = require_principal()
    current_id = principal.session.id if principal.session else None
    rows = [
        SessionRow(
            public_id=row.public_id,
            device=describe_user_agent(row.user_agent),
            ip_address=row.ip_address,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            remember=row.remember,
            current=row.id == current_id,
        )
        for row in _live_sessions(principal)
    ]
    return render_template("account/sessions.html", rows=rows)


def _own_session_or_404(principal: Principal, public_id: str) -> UserSession:
    """Only the principal's own sessions can be found: another user's id is a 404 too."""
    path_id_or_404("session", public_id)
    found = get_db().scalar(
        select(UserSession).where(
            UserSession.public_id == public_id, UserSession.user_id == principal.user.id
        )
    )
    if found is None:
        raise NotFound()
    return found


@bp.post("/sessions/<public_id>/revoke")
@login_required
def revoke_session(public_id: str) -> ResponseReturnValue:
    principal = require_principal()
    target = _own_session_or_404(principal, public_id)
    db = get_db()
    if principal.session is not None and target.id == principal.session.id:
        # Signing out this browser from the list is a sign-out like the header's button.
        record_event(db, principal.user.id, EventKind.SIGNED_OUT)
        end_session()
        db.commit()
        session.clear()
        flash("You have signed out.", "info")
        return redirect(url_for("pages.landing"), code=303)
    # Deleting the row is the whole revocation: the other browser's cookie now names nothing.
    db.delete(target)
    record_event(db, principal.user.id, EventKind.SESSION_REVOKED, "one other session")
    db.commit()
    flash("That session was signed out.", "success")
    return redirect(url_for("account.sessions"), code=303)


@bp.post("/sessions/revoke-others")
@login_required
def revoke_other_sessions() -> ResponseReturnValue:
    principal = require_principal()
    db = get_db()
    ended = revoke_sessions(db, principal.user.id, keep=principal.session)
    if ended:
        record_event(db, principal.user.id, EventKind.SESSION_REVOKED, f"{ended} other sessions")
    db.commit()
    if ended:
        flash(f"Signed out {ended} other session{'s' if ended != 1 else ''}.", "success")
    else:
        flash("There were no other sessions to sign out.", "info")
    return redirect(url_for("account.sessions"), code=303)


# ---------------------------------------------------------------------------
# Security events
# ---------------------------------------------------------------------------


def _describe_event(kind: str) -> str:
    """The words for an event; a kind this version does not know is shown as it is."""
    try:
        return DESCRIPTIONS[EventKind(kind)]
    except (ValueError, KeyError):
        return kind


@bp.get("/security")
@login_required
def security() -> ResponseReturnValue:
    user_id = require_principal().user.id
    db = get_db()
    total = (
        db.scalar(
            select(func.count()).select_from(SecurityEvent).where(SecurityEvent.user_id == user_id)
        )
        or 0
    )
    pages = max(1, math.ceil(total / EVENTS_PER_PAGE))
    page = min(page_number(), pages)
    events = db.scalars(
        select(SecurityEvent)
        .where(SecurityEvent.user_id == user_id)
        .order_by(SecurityEvent.created_at.desc(), SecurityEvent.id.desc())
        .limit(EVENTS_PER_PAGE)
        .offset((page - 1) * EVENTS_PER_PAGE)
    ).all()
    rows = [
        {
            "description": _describe_event(event.kind),
            # Fixed phrases chosen by the code (events.py), never user input.
            "detail": event.detail,
            "created_at": event.created_at,
            "ip_address": event.ip_address,
            "device": describe_user_agent(event.user_agent),
        }
        for event in events
    ]
    return render_template("account/security.html", rows=rows, page=page, pages=pages, total=total)


# ---------------------------------------------------------------------------
# Email change: the new address must answer before it takes effect
# ---------------------------------------------------------------------------


def _email_form(user: User) -> ChangeEmailForm:
    form = ChangeEmailForm()
    form.current_email = user.email
    return form


def _email_change_limit() -> str:
    """Asking for an email change mails a stranger's address; an elevated session should
    not be able to turn that into a mail cannon. Only accepted requests count."""
    return current_app.config["EMAIL_CHANGE_RATE_LIMIT"]


@outage_safe_key
def _requesting_account() -> str:
    return f"email-change:{require_principal().user.id}"


def _request_accepted(response: object) -> bool:
    """An accepted request may have sent a mail: it keeps its place in the count."""
    return getattr(response, "status_code", None) == 303


@bp.get("/email")
@login_required
def email_form() -> ResponseReturnValue:
    # Changing the address decides where password resets go, so it is guarded like a
    # password change: the account holder, with fresh proof that includes the second
    # factor when one is enrolled (account.email.change).
    authorize("account.email.change", require_principal().user)
    user = require_principal().user
    return render_template("account/email.html", form=_email_form(user), user=user)


@bp.post("/email")
@login_required
# Every request takes its place in the count before the view runs (one atomic increment)
# and gives it back unless it was accepted: Flask-Limiter's own deduct_when checks first
# and counts after, so a burst of parallel requests all passed (the second review).
@failures_limit(
    _email_change_limit, name="email-change", failed=_request_accepted, key_func=_requesting_account
)
def request_email_change() -> ResponseReturnValue:
    # Self, elevated, with the second factor when enrolled (see email_form).
    authorize("account.email.change", require_principal().user)
    user = require_principal().user
    form = _email_form(user)
    if not form.validate_on_submit():
        return render_template("account/email.html", form=form, user=user), 422

    db = get_db()
    new_address = form.email.data or ""  # validated: DataRequired
    # Only the latest request counts: earlier links stop working.
    revoke_tokens(db, user.id, TokenPurpose.CHANGE_EMAIL)
    taken = db.scalar(select(User.id).where(User.email == new_address, User.id != user.id))
    token = None
    if taken is None:
        token = issue_token(
            db,
            user,
            TokenPurpose.CHANGE_EMAIL,
            current_app.config["EMAIL_CHANGE_SECONDS"],
            email=new_address,
        )
    # Recorded either way: the account holder did ask (the address is not in the event).
    record_event(db, user.id, EventKind.EMAIL_CHANGE_REQUESTED)
    db.commit()
    if token is not None:
        send_mail(
            new_address,
            "Confirm your new InvoiceApp email address",
            "email_change_confirm",
            name=user.display_name,
            confirm_url=link_for("account.confirm_email_change_form", token=token),
            hours=current_app.config["EMAIL_CHANGE_SECONDS"] // 3600,
        )
    # A taken address gets the very same answer, so this form cannot be used to find out
    # who has an account; its owner gets no mail either.
    flash(EMAIL_CHANGE_REQUESTED, "info")
    return redirect(url_for("account.index"), code=303)


@bp.after_request
def _token_pages_are_not_kept(response: Response) -> Response:
    """The confirmation pages sit at a URL holding a token and may be shown to nobody
    signed in: no cache keeps them, no Referer carries the token away."""
    if request.endpoint in ("account.confirm_email_change_form", "account.confirm_email_change"):
        return no_store(response)
    return response


def _link_no_longer_valid() -> ResponseReturnValue:
    return render_template("account/email_link_invalid.html"), 400


def _address_taken(db: Session, token: AccountToken) -> bool:
    """Whether another account has the link's new address by now."""
    taken = db.scalar(select(User.id).where(User.email == token.email, User.id != token.user_id))
    return taken is not None


@bp.get("/email/confirm/<token>")
def confirm_email_change_form(token: str) -> ResponseReturnValue:
    """The link from the mail shows a button and changes nothing: scanners open links.

    Public on purpose, like the button: the link may be opened in another browser, or
    signed out.
    """
    db = get_db()
    found = find_usable_token(db, token, TokenPurpose.CHANGE_EMAIL)
    if found is None or _address_taken(db, found):
        return _link_no_longer_valid()
    page = one_button_page(
        title="Confirm your new email address",
        explanation=f"Press the button to make {found.email} the address of your InvoiceApp "
        "account. You will sign in with it from now on, and your previous address will be "
        "told about the change.",
        button="Use this email address",
        endpoint="account.confirm_email_change",
        token=token,
    )
    return page


@bp.post("/email/confirm/<token>")
def confirm_email_change(token: str) -> ResponseReturnValue:
    """The button. Public on purpose: the link may be opened in another browser, or signed
    out. Holding the link proves the new inbox is the user's; the request itself was made
    from an elevated session when the link was issued.
    """
    db = get_db()
    claimed = claim_token(db, token, TokenPurpose.CHANGE_EMAIL)
    if claimed is None:
        db.rollback()
        return _link_no_longer_valid()
    user = claimed.user
    new_address = claimed.email
    if _address_taken(db, claimed):
        db.commit()  # the link is used up either way
        return _link_no_longer_valid()
    old_address = user.email
    try:
        user.email = new_address
        # The new address just proved itself by answering.
        user.email_verified_at = utcnow()
        # Links mailed to the old address (resets, verification, other changes) lose
        # their power over the account along with the address.
        revoke_tokens(
            db,
            user.id,
            TokenPurpose.RESET_PASSWORD,
            TokenPurpose.VERIFY_EMAIL,
            TokenPurpose.CHANGE_EMAIL,
        )
        # So do sign-in codes and magic links in flight (or they would work again if the
        # account moved back to the old address within their ten minutes).
        revoke_pending(db, user.id)
        record_event(db, user.id, EventKind.EMAIL_CHANGED)
        db.commit()
    except IntegrityError:
        # Another account took the address between the check and the commit.
        db.rollback()
        return _link_no_longer_valid()
    send_mail(
        old_address,
        "Your InvoiceApp email address was changed",
        "email_changed_notice",
        name=user.display_name,
        new_email=new_address,
        sign_in_url=link_for("authn.sign_in_form"),
    )
    return render_template("account/email_changed.html", new_email=new_address)


# ---------------------------------------------------------------------------
# Elevation
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionState:
    """What the header says about the session: plainly signed in, or elevated for a while."""

    elevated: bool
    minutes_left: int


@bp.app_template_global("session_state")
def session_state(principal: Principal | None) -> SessionState:
    """For templates/account/_session_state.html; no database access (error pages use it)."""
    auth_session = principal.session if principal is not None else None
    if auth_session is None or not is_fresh(auth_session):
        return SessionState(elevated=False, minutes_left=0)
    fresh_for = timedelta(seconds=current_app.config["FRESH_AGE_SECONDS"])
    left = fresh_for - (utcnow() - auth_session.authenticated_at)
    return SessionState(elevated=True, minutes_left=max(1, math.ceil(left.total_seconds() / 60)))


@bp.post("/elevation/end")
@login_required
def end_elevation() -> ResponseReturnValue:
    """Leaving the computer for a minute should not leave sensitive changes one click away."""
    principal = require_principal()
    auth_session = principal.session
    assert auth_session is not None  # a principal always comes from a session
    db = get_db()
    if is_fresh(auth_session):
        fresh_for = current_app.config["FRESH_AGE_SECONDS"]
        auth_session.authenticated_at = utcnow() - timedelta(seconds=fresh_for + 1)
        record_event(db, principal.user.id, EventKind.ELEVATION_ENDED)
        db.commit()
        flash("Sensitive changes will ask for your password again.", "info")
    else:
        flash("Sensitive changes already ask for your password.", "info")
    return redirect(safe_next(request.form.get("next")) or url_for("account.index"), code=303)
