"""Sign-in, sign-out and re-authentication: the pages where identity is proven.

Three kinds of proof meet here (NIST SP 800-63B's "authenticators"):

- something you know: the password (passwords.py);
- something you have: a code from an authenticator app (totp.py), or one of the
  recovery codes printed when it was set up (recovery_codes.py);
- something you have *and* know or are: a passkey, unlocked on the device with a PIN
  or a fingerprint (passkeys.py);
- access to the account's mailbox: a code or a link sent by email (email_sign_in.py),
  a first factor like the password.

With TOTP enrolled, a right password is only half a sign-in: the browser is sent to
/sign-in/two-factor carrying a short-lived, signed note ("this password was right"),
and there is still no principal: no session row, every gated page answers as for
anyone anonymous. Only the second step starts the session, recording how it was
proven (UserSession.proof), which authorization later reads.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Any

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
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse  # what redirect() is typed to return

from ...authn import counters, passkeys, recovery_codes, totp
from ...authn.devices import issue_device_cookie, trusted_device_for
from ...authn.events import EventKind, record_event
from ...authn.forms import (
    CodeForm,
    EmptyForm,
    PasswordAndCodeForm,
    ReauthenticateForm,
    SignInForm,
    normalise_email,
)
from ...authn.gate import WWW_AUTHENTICATE, login_required
from ...authn.passwords import hash_password, needs_rehash, verify_password
from ...authn.redirects import next_or_default, safe_next
from ...authn.sessions import current_session, end_session, mark_reauthenticated, start_session
from ...db import get_db, utcnow
from ...errors import json_error, json_response
from ...extensions import failures_limit, limiter, outage_safe_key
from ...forms import add_error
from ...mail import link_for, send_mail
from ...models import Membership, Organization, Passkey, User
from ...principal import require_principal

bp = Blueprint("authn", __name__)

# One message for an unknown email and a wrong password: the answer must not
# tell anyone which addresses have accounts.
SIGN_IN_FAILED = "That email and password do not match an account."
# One message for a wrong, reused or expired code, TOTP or recovery code alike.
CODE_FAILED = (
    "That code did not work. Type the current code from your authenticator app, "
    "or one of your recovery codes."
)
CODES_LOCKED = (
    "After too many wrong codes, codes from your authenticator app are no longer accepted "
    "for this account. Use one of your recovery codes, or reset your password by email."
)
PASSKEY_FAILED = "That passkey was not accepted here. Try again, or sign in with your password."
PENDING_KEY = "two_factor_pending"
# What may come before the authenticator step.
FIRST_FACTORS = ("password", "email_code", "magic_link")


def _sign_in_limit() -> str:
    return current_app.config["SIGN_IN_RATE_LIMIT"]


def _account_limit() -> str:
    return current_app.config["SIGN_IN_ACCOUNT_RATE_LIMIT"]


@outage_safe_key
def _claimed_account() -> str:
    """Failed sign-ins are counted per account and per kind of client (see devices.py),
    and per password: guesses at the old password say nothing about a new one, so a
    reset (or a change) starts the account's count again."""
    if "claimed_account" not in g:
        email = normalise_email(request.form.get("email"))[:320]
        device = trusted_device_for(email)
        g.claimed_account = f"account:{email}:{_password_generation(email)}:" + (
            f"device:{device}" if device else "untrusted"
        )
    return g.claimed_account


def _password_generation(email: str) -> str:
    """Changes whenever the account's password does ("none" for an unknown address)."""
    user = get_db().scalar(select(User).where(User.email == email))
    return _password_fingerprint(user) if user is not None else "none"


def _failed(response: Response) -> bool:
    return response.status_code == 401


# The limits below count failed attempts only, each taking its place before the view
# runs (invoiceapp.extensions.failures_limit): a burst cannot outrun them.
per_address_failures = failures_limit(_sign_in_limit, name="failed-attempts", failed=_failed)


# A wrong password at /reauthenticate: the form is fine, the proof is not (422, like any
# form error, so the browser stays on the page; the limiter counts only these).
WRONG_PASSWORD = 422


def _wrong_password(response: Response) -> bool:
    """A wrong password or a wrong code at /reauthenticate (either counts)."""
    return response.status_code == WRONG_PASSWORD and getattr(g, "wrong_password", False)


def _sign_in_page(form: SignInForm, **context: Any) -> str:
    return render_template(
        "authn/sign_in.html",
        form=form,
        passkeys_here=passkeys_work_here(),
        passkey_origin=current_app.config["WEBAUTHN_ORIGIN"],
        demo_accounts=_demo_accounts() if current_app.config["DEMO_MODE"] else [],
        **context,
    )


def _demo_accounts() -> list[tuple[User, list[tuple[str, str]]]]:
    """Demo mode: every account with its role in each organization, for the sign-in lesson.

    Choosing one only fills in the email (a claim); the password is still typed and checked.
    """
    rows = get_db().execute(
        select(User, Organization.name, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .join(Organization, Organization.id == Membership.organization_id)
        .order_by(User.id, Membership.id)
        .limit(60)
    )
    accounts: dict[int, tuple[User, list[tuple[str, str]]]] = {}
    for user, organization_name, role in rows:
        accounts.setdefault(user.id, (user, []))[1].append((organization_name, role))
    return list(accounts.values())


@bp.get("/sign-in")
def sign_in_form() -> ResponseReturnValue:
    if flask_login.current_user.is_authenticated:
        return redirect(next_or_default(request.args.get("next")), code=303)
    form = SignInForm(
        next=safe_next(request.args.get("next")) or "",
        # Demo accounts link here with ?email=: it fills in the claim, never the proof.
        email=normalise_email(request.args.get("email"))[:320],
    )
    return _sign_in_page(form)


@bp.post("/sign-in")
# Only failures count, per address: a classroom behind one address signs in freely.
@per_address_failures
@failures_limit(
    _account_limit, name="failed-per-account", failed=_failed, key_func=_claimed_account
)
def sign_in() -> ResponseReturnValue:
    form = SignInForm()
    if not form.validate_on_submit():
        return _sign_in_page(form), 422

    # Before the hard limit above, a growing delay: slowed down, not locked out.
    db = get_db()
    wait = counters.claim_sign_in_attempt(db, _claimed_account())
    db.commit()
    if wait:
        return _slow_down(form, wait)

    # Identification: the email names a claimed account, nothing more.
    user = db.scalar(select(User).where(User.email == form.email.data))
    # Authentication: only the password turns the claim into a principal.
    # An unknown email still pays for one hash check (see verify_password).
    right = verify_password(user.password_hash if user else None, form.password.data or "")
    # An account that turned password sign-in off (it has a passkey) refuses even the right
    # password, with the same message and the same count: a stolen password is worth
    # nothing there, and the answer does not tell the thief it was right.
    if not right or user is None or not user.password_sign_in:
        # Unknown addresses are counted too: the delay must not tell which exist.
        counters.record_sign_in_failure(db, _claimed_account())
        if user is not None:
            detail = "" if user.password_sign_in else "password sign-in is turned off"
            record_event(db, user.id, EventKind.SIGN_IN_FAILED, detail)
        db.commit()
        form.password.data = ""
        html = _sign_in_page(form, failure=SIGN_IN_FAILED)
        return html, 401, {"WWW-Authenticate": WWW_AUTHENTICATE}
    assert user is not None

    counters.forget_sign_in_failures(db, _claimed_account())
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(form.password.data or "")
    return first_factor_proven(
        user, proof="password", remember=bool(form.remember.data), next_path=form.next.data
    )


def first_factor_proven(
    user: User, *, proof: str, remember: bool, next_path: str | None, detail: str = ""
) -> BaseResponse:
    """A password, a code by email or a magic link was right: with an authenticator app
    set up, that is only the first step (/sign-in/two-factor); otherwise, signed in."""
    if user.totp_enabled_at is not None:
        # Something you know (or your mailbox) is proven; something you have is still to
        # come. No session yet.
        get_db().commit()
        session.clear()
        _begin_pending(user, remember=remember, next_path=next_path, first=proof)
        return redirect(url_for("authn.two_factor_form"), code=303)
    return _signed_in(user, remember=remember, proof=proof, next_path=next_path, detail=detail)


def _slow_down(form: SignInForm, seconds: int) -> ResponseReturnValue:
    """429 with the form still there: wait a few seconds, then try again."""
    form.password.data = ""
    failure = (
        "Many wrong passwords were tried for this account in the last few minutes, so "
        f"sign-in is slowed down. Please wait {seconds} second{'' if seconds == 1 else 's'} "
        "and try again."
    )
    html = _sign_in_page(form, failure=failure)
    return html, 429, {"Retry-After": str(seconds)}


def _signed_in(
    user: User, *, remember: bool, proof: str, next_path: str | None, detail: str = ""
) -> BaseResponse:
    """Every successful sign-in ends here: a new session saying how it was proven."""
    # A new session id at every sign-in, and a new CSRF token with it (no fixation).
    session.clear()
    start_session(user, remember=remember, proof=proof)
    record_event(get_db(), user.id, EventKind.SIGN_IN_SUCCEEDED, detail)
    get_db().commit()
    flash("You are signed in.", "success")  # no names: flashes travel in a readable cookie
    response = redirect(next_or_default(next_path), code=303)
    issue_device_cookie(response, user.email)
    return response


# ---------------------------------------------------------------------------
# The second sign-in step: /sign-in/two-factor
# ---------------------------------------------------------------------------


def _password_fingerprint(user: User) -> str:
    """Changes whenever the password does: a reset voids a half-finished sign-in."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def _begin_pending(
    user: User, *, remember: bool, next_path: str | None, first: str = "password"
) -> None:
    """Remember "this password was right" in Flask's signed cookie for a few minutes.

    Signed, so it cannot be forged; short-lived and tied to the password, so a copy is
    worth little: whoever holds it still needs the second factor, which is rate limited
    per account.
    """
    lifetime = current_app.config["TWO_FACTOR_PENDING_SECONDS"]
    session[PENDING_KEY] = {
        "user": user.id,
        "remember": remember,
        "next": safe_next(next_path) or "",
        "expires": utcnow().timestamp() + lifetime,
        "password": _password_fingerprint(user),
        # The first step's proof ("password", "email_code", "magic_link"): the session
        # will record it with the second ("email_code+totp").
        "first": first,
    }


@dataclass(frozen=True)
class Pending:
    user: User
    remember: bool
    next_path: str
    first: str = "password"


class NoPending(Enum):
    """Why there is no half-finished sign-in to go on with: the two get different answers."""

    NONE = "none"  # never started, unreadable, or the account changed meanwhile
    EXPIRED = "expired"  # started, but too long ago


def _pending() -> Pending | NoPending:
    """The half-finished sign-in the password started, or why there is none."""
    state = session.get(PENDING_KEY)
    if not isinstance(state, dict):
        return NoPending.NONE
    try:
        expired = utcnow().timestamp() > float(state["expires"])
        user = get_db().get(User, int(state["user"]))
    except (KeyError, TypeError, ValueError):
        return NoPending.NONE
    if expired:
        return NoPending.EXPIRED
    if (
        user is None
        or user.totp_enabled_at is None
        or state.get("password") != _password_fingerprint(user)
    ):
        return NoPending.NONE
    first = state.get("first") if state.get("first") in FIRST_FACTORS else "password"
    return Pending(user, bool(state.get("remember")), str(state.get("next") or ""), str(first))


@outage_safe_key
def _pending_account() -> str:
    """Wrong codes count per account and per kind of client, like wrong passwords: a
    thief who has the password cannot use up the owner's known browser's attempts."""
    state = session.get(PENDING_KEY)
    user_id = state.get("user") if isinstance(state, dict) else None
    user = get_db().get(User, user_id) if isinstance(user_id, int) else None
    device = trusted_device_for(user.email) if user is not None else None
    return f"two-factor-account:{user_id}:" + (f"device:{device}" if device else "untrusted")


def _two_factor_account_limit() -> str:
    return current_app.config["TWO_FACTOR_ACCOUNT_RATE_LIMIT"]


def _start_over(message: str) -> BaseResponse:
    session.pop(PENDING_KEY, None)
    flash(message, "error")
    return redirect(url_for("authn.sign_in_form"), code=303)


EXPIRED = "That sign-in took too long, so it was cancelled. Please sign in again."


@bp.get("/sign-in/two-factor")
def two_factor_form() -> ResponseReturnValue:
    pending = _pending()
    if pending is NoPending.EXPIRED:
        return _start_over(EXPIRED)
    if pending is NoPending.NONE:
        return redirect(url_for("authn.sign_in_form"), code=303)
    return render_template(
        "authn/two_factor.html", form=CodeForm(formdata=None), first=pending.first
    )


@bp.post("/sign-in/two-factor")
@per_address_failures
@failures_limit(
    _two_factor_account_limit, name="failed-codes", failed=_failed, key_func=_pending_account
)
def two_factor() -> ResponseReturnValue:
    """Something you have: the code finishes the sign-in the password started."""
    pending = _pending()
    if pending is NoPending.EXPIRED:
        return _start_over(EXPIRED)
    if pending is NoPending.NONE:
        return _start_over("Please sign in with your email and password first.")
    form = CodeForm()
    if not form.validate_on_submit():
        return render_template("authn/two_factor.html", form=form, first=pending.first), 422
    user = pending.user
    proof = _check_second_factor(user, form.code.data or "")
    if proof is None:
        record_event(get_db(), user.id, EventKind.TWO_FACTOR_FAILED)
        get_db().commit()
        form.code.data = ""
        failure = CODES_LOCKED if counters.codes_locked(user) else CODE_FAILED
        html = render_template(
            "authn/two_factor.html", form=form, failure=failure, first=pending.first
        )
        return html, 401, {"WWW-Authenticate": WWW_AUTHENTICATE}
    detail = "with a recovery code" if proof == "password+recovery_code" else "with a code"
    # The session records both steps as they were: "email_code+totp", "password+totp"…
    proof = pending.first + "+" + proof.split("+", 1)[1]
    return _signed_in(
        user, remember=pending.remember, proof=proof, next_path=pending.next_path, detail=detail
    )


def _check_second_factor(user: User, code: str) -> str | None:
    """The proof a right code makes ("password+totp" or "password+recovery_code"), or None.

    A recovery code is spent at once and its owner told by mail: if it was not them,
    they learn that someone has their password and one of their codes.
    """
    db = get_db()
    if user.totp_enabled_at is None:
        # A secret still being enrolled proves nothing yet: it was shown to whoever had a
        # fresh password, and confirming it is itself a change that needs a second factor.
        return None
    # Every code counts before it is checked (counters.py); at the limit, authenticator
    # codes are refused unchecked, and a recovery code is the way back in.
    count = counters.claim_code_attempt(db, user)
    db.commit()
    if totp.CODE.fullmatch(totp.normalise_code(code)):
        if count is not None and totp.verify_code(db, user, code):
            counters.clear_code_failures(db, user)
            return "password+totp"
        _wrong_code(user, count)
        return None
    if recovery_codes.use_code(db, user, code):
        counters.clear_code_failures(db, user)
        record_event(db, user.id, EventKind.RECOVERY_CODE_USED)
        left = recovery_codes.remaining(db, user)
        db.commit()
        send_mail(
            user.email,
            "A recovery code was used on your InvoiceApp account",
            "recovery_code_used",
            name=user.display_name,
            remaining=left,
            security_url=link_for("account.security"),
            two_factor_url=link_for("two_factor.two_factor_page"),
            reset_url=link_for("recovery.forgot_password_form"),
        )
        return "password+recovery_code"
    _wrong_code(user, count)
    return None


def _wrong_code(user: User, count: int | None) -> None:
    """The code that reaches the limit locks the account's codes and tells its owner."""
    if count != counters.code_limit():
        return
    record_event(get_db(), user.id, EventKind.TWO_FACTOR_LOCKED)
    get_db().commit()
    send_mail(
        user.email,
        "Sign-in codes were locked on your InvoiceApp account",
        "second_factor_locked",
        name=user.display_name,
        attempts=count,
        reset_url=link_for("recovery.forgot_password_form"),
        security_url=link_for("account.security"),
    )


# ---------------------------------------------------------------------------
# Passkey sign-in: /sign-in/passkey (JSON, driven by static/passkeys.js)
# ---------------------------------------------------------------------------


def _passkey_options_limit() -> str:
    return current_app.config["PASSKEY_OPTIONS_RATE_LIMIT"]


@bp.post("/sign-in/passkey/options")
@limiter.limit(_passkey_options_limit)
def passkey_options() -> ResponseReturnValue:
    """A challenge for navigator.credentials.get(), naming no account (discoverable)."""
    options = passkeys.authentication_options(get_db())
    get_db().commit()
    return json_response(options)


@bp.post("/sign-in/passkey")
@per_address_failures
def passkey_sign_in() -> ResponseReturnValue:
    """The passkey alone signs in: possession plus the device's own PIN or biometric."""
    db = get_db()
    try:
        passkey = passkeys.authenticate(db, request.form.get("credential", ""))
    except passkeys.PasskeyRejected as rejected:
        db.commit()  # a claimed challenge stays claimed
        current_app.logger.info("passkey sign-in refused: %s", rejected)
        return json_error(401, PASSKEY_FAILED)
    user = db.get(User, passkey.user_id)
    assert user is not None
    response = _signed_in(
        user,
        remember=request.form.get("remember") in ("on", "true", "1"),
        proof="passkey",
        next_path=request.form.get("next"),
        detail="with a passkey",
    )
    body = json_response({"redirect": response.headers["Location"]})
    for cookie in response.headers.getlist("Set-Cookie"):
        body.headers.add("Set-Cookie", cookie)
    return body


@bp.get("/sign-out")
def sign_out_confirm() -> ResponseReturnValue:
    """Signing out changes state, so it is a POST; this page only holds the button."""
    if not flask_login.current_user.is_authenticated:
        return redirect(url_for("pages.landing"), code=303)
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
    return redirect(url_for("pages.landing"), code=303)


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
    return redirect(url_for("authn.sign_in_form"), code=303)


def _render_reauthenticate(
    *,
    password_form: ReauthenticateForm | None = None,
    code_form: PasswordAndCodeForm | None = None,
    second_factor_only: bool = False,
    next_path: str = "",
) -> str:
    """The page offers every proof the account has; ``factor=second`` hides the password."""
    user = require_principal().user
    has_passkey = (
        get_db().scalar(select(Passkey.id).where(Passkey.user_id == user.id).limit(1)) is not None
    )
    has_totp = user.totp_enabled_at is not None
    return render_template(
        "authn/reauthenticate.html",
        form=password_form or ReauthenticateForm(formdata=None, next=next_path),
        code_form=code_form or PasswordAndCodeForm(formdata=None, next=next_path),
        has_totp=has_totp,
        has_passkey=has_passkey,
        # Asked for a second factor, and there is one: the password alone will not do.
        second_factor_only=second_factor_only and (has_totp or has_passkey),
        next_path=next_path,
        passkeys_here=passkeys_work_here(),
    )


def passkeys_work_here() -> bool:
    """Passkeys belong to WEBAUTHN_RP_ID; on another host name the browser refuses them."""
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    return host == current_app.config["WEBAUTHN_RP_ID"]


@bp.get("/reauthenticate")
@login_required
def reauthenticate_form() -> ResponseReturnValue:
    return _render_reauthenticate(
        second_factor_only=request.args.get("factor") == "second",
        next_path=safe_next(request.args.get("next")) or "",
    )


def _reauth_account_limit() -> str:
    return current_app.config["REAUTH_ACCOUNT_RATE_LIMIT"]


@outage_safe_key
def _reauthenticating_account() -> str:
    return f"reauth-account:{flask_login.current_user.get_id()}"


# One budget of wrong proofs per account for the password, code and passkey forms alike:
# three routes must not mean three times the guesses.
reauth_account_limit = failures_limit(
    _reauth_account_limit,
    name="reauthenticate",
    failed=_wrong_password,
    key_func=_reauthenticating_account,
    shared=True,
)


@bp.post("/reauthenticate")
@login_required
@limiter.limit(_sign_in_limit)
@reauth_account_limit
def reauthenticate() -> ResponseReturnValue:
    """Fresh proof of identity: authorization asked for it, authentication supplies it.

    Whoever holds a stolen cookie could guess here, so wrong passwords are limited per
    account (any session), and a session that guesses REAUTH_MAX_FAILURES times is ended.
    """
    principal = require_principal()
    form = ReauthenticateForm()
    next_path = safe_next(form.next.data) or ""
    if not form.validate_on_submit():
        return _render_reauthenticate(password_form=form, next_path=next_path), 422
    if not _claim_proof_attempt():
        return _end_session_after_guessing()
    if not _password_accepted(principal.user, form.password.data or ""):
        if _count_wrong_proof():
            return _end_session_after_guessing()
        add_error(form.password, "That password is not right.")
        return _render_reauthenticate(password_form=form, next_path=next_path), WRONG_PASSWORD
    return _reauthenticated("password", form.next.data)


def _password_accepted(user: User, password: str) -> bool:
    """The right password, from an account that still signs in with one (a passwordless
    account's old password proves nothing here either)."""
    return verify_password(user.password_hash, password) and user.password_sign_in


def _claim_proof_attempt() -> bool:
    """Take this attempt's place in the session's budget before the proof is checked
    (counters.py): of ten guesses at once, only REAUTH_MAX_FAILURES are ever checked.
    False when none is left: the session must end."""
    auth_session = require_principal().session
    if auth_session is None:
        return True
    count = counters.claim_reauthentication(get_db(), auth_session)
    get_db().commit()
    return count is not None


def _count_wrong_proof() -> bool:
    """A wrong password, code or passkey, already counted against this session by
    _claim_proof_attempt (and, through the limiter, against this account). True when
    it was the session's last attempt and the session must end."""
    principal = require_principal()
    g.wrong_password = True
    auth_session = principal.session
    record_event(get_db(), principal.user.id, EventKind.REAUTHENTICATION_FAILED)
    get_db().commit()
    if auth_session is None:
        return False
    return auth_session.failed_reauthentications >= current_app.config["REAUTH_MAX_FAILURES"]


def _reauthenticated(proof: str, next_path: str | None) -> BaseResponse:
    """Fresh proof accepted: elevate the session, recording how it was proven."""
    principal = require_principal()
    if principal.session is not None:
        counters.clear_reauthentication(get_db(), principal.session)
    mark_reauthenticated(proof)
    record_event(get_db(), principal.user.id, EventKind.ELEVATION_GRANTED, f"with {proof}")
    get_db().commit()
    session.pop("csrf_token", None)  # a new privilege level gets a new CSRF token too
    flash("Thanks. You can make sensitive changes for the next few minutes.", "success")
    return redirect(next_or_default(next_path), code=303)


@bp.post("/reauthenticate/code")
@login_required
@limiter.limit(_sign_in_limit)
@reauth_account_limit
def reauthenticate_with_code() -> ResponseReturnValue:
    """Step-up with the password and something you have: an authenticator code (or a
    recovery code). The password is checked first, so a wrong one never uses up a code."""
    principal = require_principal()
    form = PasswordAndCodeForm()
    next_path = safe_next(form.next.data) or ""
    if not form.validate_on_submit():
        page = _render_reauthenticate(code_form=form, second_factor_only=True, next_path=next_path)
        return page, 422
    if not _claim_proof_attempt():
        return _end_session_after_guessing()
    right_password = _password_accepted(principal.user, form.password.data or "")
    proof = _check_second_factor(principal.user, form.code.data or "") if right_password else None
    if proof is None:
        if _count_wrong_proof():
            return _end_session_after_guessing()
        form.code.data = ""
        # One message for either mistake: which one was wrong stays unsaid.
        add_error(
            form.code,
            CODES_LOCKED
            if right_password and counters.codes_locked(principal.user)
            else "That password and code did not work together.",
        )
        page = _render_reauthenticate(code_form=form, second_factor_only=True, next_path=next_path)
        return page, WRONG_PASSWORD
    return _reauthenticated(proof, form.next.data)


@bp.post("/reauthenticate/passkey/options")
@login_required
@limiter.limit(_passkey_options_limit)
def reauthenticate_passkey_options() -> ResponseReturnValue:
    """A challenge only this user's passkeys can answer."""
    options = passkeys.authentication_options(get_db(), require_principal().user)
    get_db().commit()
    return json_response(options)


@bp.post("/reauthenticate/passkey")
@login_required
@limiter.limit(_sign_in_limit)
@reauth_account_limit
def reauthenticate_with_passkey() -> ResponseReturnValue:
    principal = require_principal()
    db = get_db()
    if not _claim_proof_attempt():
        _end_session_after_guessing()
        return json_error(401, "This session was ended. Please sign in again.")
    try:
        passkeys.authenticate(db, request.form.get("credential", ""), principal.user)
    except passkeys.PasskeyRejected as rejected:
        current_app.logger.info("passkey re-authentication refused: %s", rejected)
        if _count_wrong_proof():
            _end_session_after_guessing()
            return json_error(401, "This session was ended. Please sign in again.")
        db.commit()  # a claimed challenge stays claimed
        # The session is fine; the proof was not: a 422 through and through (its body
        # says "validation", with no WWW-Authenticate), like a wrong password here.
        return json_error(WRONG_PASSWORD, PASSKEY_FAILED)
    response = _reauthenticated("passkey", request.form.get("next"))
    return json_response({"redirect": response.headers["Location"]})
