"""Account pages for "something you have": the authenticator app, recovery codes, passkeys.

Every change here is the account holder's own, so there is no scope lookup: the user is
the resource. The policy still decides, and asks for fresh proof first:

- ``account.two_factor.manage`` (self, elevated): see this page, start TOTP enrolment;
- ``account.second_factor.change`` (self, elevated *with the second factor* once one is
  enrolled): confirm a TOTP app, new recovery codes, add or remove a passkey. Otherwise a
  stolen session plus a phished password could plant a factor of their own, or mint
  recovery codes that count as one. Each change is mailed to the account holder.
- ``account.two_factor.disable`` (self, elevated *with the second factor*): turning
  TOTP off needs a fresh code or passkey, so a stolen session plus a phished password
  cannot remove the factor that was meant to stop exactly that.
- No exception for a factor that may be a thief's: a password-only session can never
  remove a factor, because a thief holds the password too. A factor added lately by a
  password-only session is flagged on these pages and in mail; its owner gets rid of it
  with a password reset, which proves the mailbox (see second_factor.py).

The sign-in side (the second step, passkey sign-in, step-up) is in sign_in.py.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import delete, select

from ...authn import passkeys, recovery_codes, totp
from ...authn.events import EventKind, record_event
from ...authn.forms import CodeForm, EmptyForm
from ...authn.gate import login_required
from ...authn.second_factor import has_second_factor, passkey_flagged_until, totp_flagged_until
from ...authn.sign_in_methods import MethodRefused, check_passkey_removal
from ...authz.enforce import ReauthenticationRequired, authorize, can_in_template
from ...db import get_db, rows_changed, utcnow
from ...errors import json_error, json_response
from ...extensions import limiter
from ...forms import add_error
from ...mail import link_for, send_mail
from ...models import Passkey, User
from ...path_ids import path_id_or_404
from ...principal import require_principal
from .sign_in import passkeys_work_here

bp = Blueprint("two_factor", __name__)

# The policy action for changing the second factors themselves (see the docstring above).
CHANGE = "account.second_factor.change"


def _authorize_for(action: str, user: User, page: str) -> None:
    """authorize(), sending a stale session back to ``page`` (a GET) after re-authenticating,
    not to the POST-only URL that asked.

    When the action will want the second factor anyway, ask for it straight away rather
    than accept a password first and then ask again.
    """
    try:
        authorize(action, user)
    except ReauthenticationRequired as needed:
        second = needed.second_factor or _wants_second(user, action)
        raise ReauthenticationRequired(page, second_factor=second) from None


def _wants_second(user: User, action: str) -> bool:
    """Whether fresh proof for ``action`` will have to include the second factor."""
    return can_in_template(action, user).requires_second_factor and has_second_factor(user)


def _proof_page(action: str, user: User, page: str) -> str | None:
    """None when this session may do ``action`` now; else the page that takes the proof it
    needs, for a link or a script to go to instead of a request that would be refused."""
    try:
        _authorize_for(action, user, page)
    except ReauthenticationRequired as needed:
        return needed.location
    return None


# ---------------------------------------------------------------------------
# TOTP: /account/two-factor
# ---------------------------------------------------------------------------

PAGE = "/account/two-factor"


@bp.get(PAGE)
@login_required
def two_factor_page() -> ResponseReturnValue:
    """Enabled: manage it. Enrolment started: the secret to scan. Neither: a "Set up"
    button. A GET changes nothing (a prefetch or a crawler must not make a secret); the
    secret is made by the button's POST."""
    user = require_principal().user
    _authorize_for("account.two_factor.manage", user, url_for("two_factor.two_factor_page"))
    if user.totp_enabled_at is not None:
        return _render_manage(user)
    secret = _shown_secret(user)
    if secret is None:
        return render_template("account/two_factor_start.html", form=EmptyForm(formdata=None))
    return _render_setup(user, secret, CodeForm(formdata=None))


def _shown_secret(user: User) -> str | None:
    """The secret being enrolled, if enrolment has started (read only)."""
    try:
        return totp.secret_of(user)
    except totp.SecretUnreadable:
        return None


def _pending_secret(user: User) -> str:
    """The secret being enrolled: the one already shown, else a new one (committed).
    For POSTs only."""
    secret = _shown_secret(user)
    if secret is None:
        secret = totp.start_enrolment(user)
        get_db().commit()
    return secret


def _render_setup(user: User, secret: str, form: CodeForm) -> str:
    uri = totp.provisioning_uri(secret, user.email)
    return render_template(
        "account/two_factor_setup.html",
        form=form,
        uri=uri,
        qr_code=totp.qr_code_data_uri(uri),
        # Groups of four, as authenticator apps expect it typed.
        secret_groups=[secret[i : i + 4] for i in range(0, len(secret), 4)],
        restart_form=EmptyForm(formdata=None),
    )


def _render_manage(user: User) -> str:
    return render_template(
        "account/two_factor.html",
        user=user,
        remaining=recovery_codes.remaining(get_db(), user),
        flagged_until=totp_flagged_until(user),
        button=EmptyForm(formdata=None),
    )


@bp.post(PAGE)
@login_required
def confirm_enrolment() -> ResponseReturnValue:
    """Enrolment completes only when a code proves the app really holds the secret."""
    db = get_db()
    user = require_principal().user
    _authorize_for(CHANGE, user, url_for("two_factor.two_factor_page"))
    if user.totp_enabled_at is not None:
        flash("Two-factor sign-in is already on.", "info")
        return redirect(url_for("two_factor.two_factor_page"), code=303)
    secret = _pending_secret(user)
    form = CodeForm()
    if not form.validate_on_submit():
        return _render_setup(user, secret, form), 422
    if not totp.verify_code(db, user, form.code.data or ""):
        form.code.data = ""
        add_error(
            form.code,
            "That code did not match. Check that the app added the account shown here, "
            "and that your phone's clock is right, then type the newest code.",
        )
        return _render_setup(user, secret, form), 422
    user.totp_enabled_at = utcnow()
    # How this session was proven: a factor added by a password-only session is flagged
    # for a few days (it may be a thief's; a reset removes it).
    user.totp_added_with = require_principal().proof
    codes = recovery_codes.replace_codes(db, user)
    record_event(db, user.id, EventKind.TWO_FACTOR_ENABLED)
    db.commit()
    _notify(user, "Two-factor sign-in is now on for your InvoiceApp account", "two_factor_enabled")
    # Shown once, in this response only: the database keeps nothing they could be read from.
    return render_template("account/two_factor_recovery_codes.html", codes=codes, new=True)


@bp.post(PAGE + "/restart")
@bp.post(PAGE + "/start")  # registered first: url_for() names this one
@login_required
def restart_enrolment() -> ResponseReturnValue:
    """A new secret: the "Set up" button, and "Start over" for someone who scanned the
    code into the wrong place."""
    user = require_principal().user
    _authorize_for("account.two_factor.manage", user, url_for("two_factor.two_factor_page"))
    if user.totp_enabled_at is None:
        totp.start_enrolment(user)
        get_db().commit()
    return redirect(url_for("two_factor.two_factor_page"), code=303)


@bp.post(PAGE + "/recovery-codes")
@login_required
def regenerate_recovery_codes() -> ResponseReturnValue:
    db = get_db()
    user = require_principal().user
    _authorize_for(CHANGE, user, url_for("two_factor.two_factor_page"))
    if user.totp_enabled_at is None:
        return redirect(url_for("two_factor.two_factor_page"), code=303)
    codes = recovery_codes.replace_codes(db, user)
    record_event(db, user.id, EventKind.RECOVERY_CODES_REGENERATED)
    db.commit()
    _notify(
        user,
        "New recovery codes were made for your InvoiceApp account",
        "second_factor_changed",
        change="New recovery codes were made for your account; the old ones no longer work.",
    )
    return render_template("account/two_factor_recovery_codes.html", codes=codes, new=False)


@bp.post(PAGE + "/disable")
@login_required
def disable() -> ResponseReturnValue:
    """Needs fresh proof *with the second factor* (account.two_factor.disable), unless the
    app was set up lately by a password-only session: then the password will do."""
    db = get_db()
    user = require_principal().user
    if user.totp_enabled_at is None:
        return redirect(url_for("two_factor.two_factor_page"), code=303)
    _authorize_for("account.two_factor.disable", user, url_for("two_factor.two_factor_page"))
    totp.disable(user)
    recovery_codes.remove_codes(db, user)
    record_event(db, user.id, EventKind.TWO_FACTOR_DISABLED)
    db.commit()
    _notify(
        user, "Two-factor sign-in was turned off on your InvoiceApp account", "two_factor_disabled"
    )
    flash("Two-factor sign-in is off. Your password alone signs you in again.", "success")
    return redirect(url_for("two_factor.two_factor_page"), code=303)


def _notify(user: User, subject: str, template: str, **details: str) -> None:
    """A change to how the account is protected is always mailed: if it was not them,
    this is how they find out."""
    send_mail(
        user.email,
        subject,
        template,
        name=user.display_name,
        security_url=link_for("account.security"),
        reset_url=link_for("recovery.forgot_password_form"),
        passkeys_url=link_for("two_factor.passkeys_page"),
        **details,
    )


# ---------------------------------------------------------------------------
# Passkeys: /account/passkeys
# ---------------------------------------------------------------------------

PASSKEYS = "/account/passkeys"


@bp.get(PASSKEYS)
@login_required
def passkeys_page() -> ResponseReturnValue:
    """Listing needs only a session; adding and removing need fresh proof (with the
    second factor once one is enrolled): the page links to the proof it will need."""
    principal = require_principal()
    # A refusal that fresh proof cannot cure (an unverified address) is shown, not a 403:
    # the list itself needs only a session.
    refused = can_in_template(CHANGE, principal.user)
    here = url_for("two_factor.passkeys_page")
    return render_template(
        "account/passkeys.html",
        passkeys=passkeys.passkeys_of(get_db(), principal.user),
        flagged_until=passkey_flagged_until,
        refusal=None if refused.allowed else refused.reason,
        proof_needed_at=_proof_page(CHANGE, principal.user, here) if refused else None,
        passkeys_here=passkeys_work_here(),
        passkey_origin=current_app.config["WEBAUTHN_ORIGIN"],
        button=EmptyForm(formdata=None),
    )


def _reauthenticate_first(proof_page: str) -> ResponseReturnValue:
    """For the JSON ceremony: the script sends the browser to ``proof_page``."""
    return json_error(
        401, "Confirm it's you first.", "reauthentication_required", location=proof_page
    )


@bp.post(PASSKEYS + "/options")
@login_required
@limiter.limit(lambda: current_app.config["PASSKEY_OPTIONS_RATE_LIMIT"])
def passkey_registration_options() -> ResponseReturnValue:
    user = require_principal().user
    if proof_page := _proof_page(CHANGE, user, url_for("two_factor.passkeys_page")):
        return _reauthenticate_first(proof_page)
    options = passkeys.registration_options(get_db(), user)
    get_db().commit()
    return json_response(options)


@bp.post(PASSKEYS)
@login_required
def add_passkey() -> ResponseReturnValue:
    db = get_db()
    user = require_principal().user
    if proof_page := _proof_page(CHANGE, user, url_for("two_factor.passkeys_page")):
        return _reauthenticate_first(proof_page)
    try:
        passkey = passkeys.register(
            db, user, request.form.get("credential", ""), request.form.get("name")
        )
    except passkeys.PasskeyRejected as rejected:
        db.commit()  # the challenge stays used
        current_app.logger.info("passkey registration refused: %s", rejected)
        return json_error(400, "That passkey could not be added. Nothing was saved.")
    passkey.added_with = require_principal().proof  # see totp_added_with
    record_event(db, user.id, EventKind.PASSKEY_ADDED, passkey.name)
    db.commit()
    _notify(
        user,
        "A passkey was added to your InvoiceApp account",
        "second_factor_changed",
        # The name is whatever the adder typed: quoted, shortened, after the facts.
        change=(
            f"A passkey was added to your account at {passkey.created_at:%Y-%m-%d %H:%M} UTC."
            f" It can sign in to your account. The name it was given: “{passkey.name[:40]}”."
        ),
    )
    flash("Passkey added. You can sign in with it from now on.", "success")
    return json_response({"redirect": url_for("two_factor.passkeys_page")})


@bp.post(PASSKEYS + "/<public_id>/remove")
@login_required
def remove_passkey(public_id: str) -> ResponseReturnValue:
    db = get_db()
    user = require_principal().user
    path_id_or_404("passkey", public_id)  # a malformed id never reaches the database
    # Scope first: another account's passkey looks exactly like one that never existed.
    passkey = db.scalar(
        select(Passkey).where(Passkey.user_id == user.id, Passkey.public_id == public_id)
    )
    if passkey is None:
        abort(404)
    _authorize_for(CHANGE, user, url_for("two_factor.passkeys_page"))
    try:
        check_passkey_removal(db, user)  # never the last way in
    except MethodRefused as refused:
        flash(str(refused), "error")
        return redirect(url_for("two_factor.passkeys_page"), code=303)
    removed = rows_changed(
        db,
        delete(Passkey)
        .where(Passkey.id == passkey.id)
        .execution_options(synchronize_session=False),
    )
    if removed != 1:
        abort(404)  # removed by another request meanwhile
    record_event(db, user.id, EventKind.PASSKEY_REMOVED)
    db.commit()
    _notify(
        user,
        "A passkey was removed from your InvoiceApp account",
        "second_factor_changed",
        change="A passkey was removed: it no longer signs in to your account.",
    )
    flash("Passkey removed. It no longer signs in to this account.", "success")
    return redirect(url_for("two_factor.passkeys_page"), code=303)
