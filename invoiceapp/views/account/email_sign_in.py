"""Sign in by mail: "Email me a code" and "Email me a sign-in link" on the sign-in page.

Both prove the same claim a password proves, another way: whoever reads the account's
(verified) mailbox is its holder. The mechanisms are invoiceapp.authn.email_codes and
invoiceapp.authn.magic_links; these are their pages.

Asking (POST /sign-in/code, POST /sign-in/link) answers alike for an unknown, an
unverified and a verified address, in its bytes and in its time: the answer is built
before anything is looked up, and the look-up, the code and the mail run after it has
been sent (invoiceapp.background), as for /forgot-password. What the browser gets is a
nonce in its signed session cookie, which binds the code or link to it.

Both are a first factor: with an authenticator app set up, the second step follows,
exactly as after a password (sign_in.first_factor_proven).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import (
    Blueprint,
    copy_current_request_context,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.wrappers import Response
from wtforms import BooleanField, HiddenField, StringField
from wtforms.validators import DataRequired, Length

from ...authn import counters, email_codes, magic_links
from ...authn.devices import trusted_device_for
from ...authn.forms import SignInForm, normalise_email
from ...authn.gate import WWW_AUTHENTICATE
from ...authn.mailed_sign_in import (
    forget_request,
    may_sign_in_by_mail,
    remember_request,
    requested_here,
)
from ...authn.redirects import safe_next
from ...background import after_response
from ...db import get_db
from ...extensions import failures_limit, limiter, outage_safe_key
from ...forms import Form, no_control_characters
from ...mail import duration_in_words, link_for, send_mail
from ...models import EmailSignInKind, User
from .links import link_invalid, no_store
from .sign_in import (
    _account_limit,
    _failed,
    _sign_in_page,
    first_factor_proven,
    per_address_failures,
)

bp = Blueprint("email_sign_in", __name__)

CODE, LINK = EmailSignInKind.CODE, EmailSignInKind.LINK

# One message for a wrong code, an expired or used one, and one that was never sent (an
# unknown or unverified address): which it was would tell who has an account.
CODE_FAILED = (
    "That code did not work. Use the code from the latest mail, within ten minutes of "
    "asking, or ask for a new code."
)
OTHER_BROWSER = (
    "This link signs in only the browser where it was asked for. Open it there, or ask for "
    "a new code or link in this browser."
)


def _lifetime() -> str:
    return duration_in_words(current_app.config["EMAIL_SIGN_IN_SECONDS"])


# ---------------------------------------------------------------------------
# Forms
# ---------------------------------------------------------------------------


class EmailSignInForm(Form):
    """Asking for a code or a link: the address (a claim), "remember me" and ``next``."""

    email = StringField(
        "Email",
        filters=[normalise_email],
        validators=[DataRequired("Enter your email address."), Length(max=320)],
    )
    remember = BooleanField()
    next = HiddenField()


class EmailCodeForm(Form):
    code = StringField(
        "Code from the email",
        validators=[
            DataRequired("Enter the code from the email."),
            Length(max=32),
            no_control_characters,
        ],
        render_kw={
            "autocomplete": "one-time-code",
            "inputmode": "numeric",
            "autocapitalize": "none",
            "spellcheck": "false",
            "autofocus": True,
        },
    )


# ---------------------------------------------------------------------------
# Asking: POST /sign-in/code, POST /sign-in/link
# ---------------------------------------------------------------------------


def _per_client_limit() -> str:
    return current_app.config["EMAIL_SIGN_IN_RATE_LIMIT"]


def _per_email_limit() -> str:
    return current_app.config["EMAIL_SIGN_IN_EMAIL_RATE_LIMIT"]


def _asked_address_key() -> str:
    # Many addresses from one client, or one address from many: both are limited, so
    # nobody's mailbox can be flooded from here.
    return "email-sign-in:" + normalise_email(request.form.get("email"))[:320]


def _ask(kind: EmailSignInKind, answer: Callable[[], Response]) -> ResponseReturnValue:
    """Remember this browser's request, answer, and send the mail after the answer."""
    form = EmailSignInForm()
    if not form.validate_on_submit():
        page = SignInForm(formdata=None, next=safe_next(form.next.data) or "")
        return _sign_in_page(page, failure="Enter your email address first."), 422
    email = form.email.data or ""
    requested = remember_request(
        kind, email, remember=bool(form.remember.data), next_path=safe_next(form.next.data) or ""
    )
    response = answer()
    after_response(response, _send_after_the_answer(kind, email, requested.nonce))
    return response


def _send_after_the_answer(kind: EmailSignInKind, email: str, nonce: str) -> Callable[[], None]:
    @copy_current_request_context
    def work() -> None:
        try:
            _send(kind, email, nonce)
        except Exception as error:  # nobody is waiting for an answer any more
            # The class only: database errors quote their parameters, the address too.
            current_app.logger.warning("email sign-in request failed: %s", type(error).__name__)

    return work


def _send(kind: EmailSignInKind, email: str, nonce: str) -> None:
    """Mail a code or a link, if the address is a verified one that allows it."""
    db = get_db()
    user = db.scalar(select(User).where(User.email == email))
    if user is None or not may_sign_in_by_mail(user):
        return
    if kind is CODE:
        code = email_codes.issue_code(db, user, nonce)
        db.commit()  # the code exists before the mail that carries it leaves
        send_mail(
            user.email,
            "Your InvoiceApp sign-in code",  # not in the subject: lock screens show those
            "sign_in_code",
            code=code,
            expires_in=_lifetime(),
            security_url=link_for("account.security"),
        )
        return
    raw = magic_links.issue_link_token(db, user, nonce)
    db.commit()
    send_mail(
        user.email,
        "Your InvoiceApp sign-in link",
        "sign_in_link",
        link_url=link_for("email_sign_in.link_page", token=raw),
        expires_in=_lifetime(),
        security_url=link_for("account.security"),
    )


def _sent_notice(what: str) -> str:
    return (
        f"If that address belongs to an account with a verified email, we have sent it {what}. "
        f"It works once, for {_lifetime()}, and only in this browser."
    )


@bp.post("/sign-in/code")
@limiter.limit(_per_client_limit)
@limiter.limit(_per_email_limit, key_func=_asked_address_key)
def request_code() -> ResponseReturnValue:
    def answer() -> Response:
        flash(_sent_notice("a six-digit code"), "info")
        return redirect(url_for("email_sign_in.code_form"), code=303)

    return _ask(CODE, answer)


@bp.post("/sign-in/link")
@limiter.limit(_per_client_limit)
@limiter.limit(_per_email_limit, key_func=_asked_address_key)
def request_link() -> ResponseReturnValue:
    def answer() -> Response:
        flash(_sent_notice("a sign-in link"), "info")
        return redirect(url_for("authn.sign_in_form"), code=303)

    return _ask(LINK, answer)


# ---------------------------------------------------------------------------
# The code: GET, POST /sign-in/code/verify
# ---------------------------------------------------------------------------


@outage_safe_key
def _code_account() -> str:
    """Wrong codes count per claimed account and per kind of client, like wrong
    passwords (devices.py): a stranger's guesses never slow the owner's browser down."""
    if "code_account" not in g:
        requested = requested_here(CODE)
        email = requested.email if requested else ""
        device = trusted_device_for(email) if email else None
        g.code_account = f"email-code:{email}:" + (f"device:{device}" if device else "untrusted")
    return g.code_account


def _code_page(form: EmailCodeForm, email: str, **context: object) -> str:
    return render_template("authn/email_code.html", form=form, email=email, **context)


def _ask_first() -> Response:
    flash("Ask for a code first: it is sent to your email and works for ten minutes.", "error")
    return redirect(url_for("authn.sign_in_form"), code=303)


@bp.get("/sign-in/code/verify")
def code_form() -> ResponseReturnValue:
    requested = requested_here(CODE)
    if requested is None:
        return _ask_first()
    return _code_page(EmailCodeForm(formdata=None), requested.email)


@bp.post("/sign-in/code/verify")
@per_address_failures
@failures_limit(_account_limit, name="failed-email-codes", failed=_failed, key_func=_code_account)
def verify_code() -> ResponseReturnValue:
    """The code finishes the sign-in this browser asked for (and no other browser's)."""
    requested = requested_here(CODE)
    if requested is None:
        return _ask_first()
    form = EmailCodeForm()
    if not form.validate_on_submit():
        return _code_page(form, requested.email), 422
    db = get_db()
    # Slowed down, not locked out: the same growing delay as wrong passwords.
    wait = counters.claim_sign_in_attempt(db, _code_account())
    db.commit()
    if wait:
        failure = f"Too many wrong codes lately. Please wait {wait} seconds and try again."
        return _code_page(form, requested.email, failure=failure), 429, {"Retry-After": str(wait)}
    outcome = email_codes.check_code(db, requested.nonce, requested.email, form.code.data or "")
    if not isinstance(outcome, email_codes.Accepted):
        counters.record_sign_in_failure(db, _code_account())
        db.commit()
        form.code.data = ""
        page = _code_page(form, requested.email, failure=CODE_FAILED)
        return page, 401, {"WWW-Authenticate": WWW_AUTHENTICATE}
    counters.forget_sign_in_failures(db, _code_account())
    forget_request(CODE)
    return first_factor_proven(
        outcome.user,
        proof="email_code",
        remember=requested.remember,
        next_path=requested.next_path,
        detail="with a code by email",
    )


# ---------------------------------------------------------------------------
# The link: GET, POST /sign-in/link/<token>
# ---------------------------------------------------------------------------


@bp.after_request
def _token_pages_are_not_kept(response: Response) -> Response:
    if request.endpoint in ("email_sign_in.link_page", "email_sign_in.use_link"):
        return no_store(response)
    return response


@bp.get("/sign-in/link/<path:token>")
def link_page(token: str) -> ResponseReturnValue:
    """Opening the link changes nothing (mail scanners open it too): one button."""
    pending = magic_links.usable_link(get_db(), token)
    if pending is None:
        return link_invalid("sign_in")
    requested = requested_here(LINK)
    here = magic_links.asked_here(pending, requested.nonce if requested else None)
    return render_template(
        "authn/magic_link.html",
        action=url_for("email_sign_in.use_link", token=token),
        asked_here=here,
    )


@bp.post("/sign-in/link/<path:token>")
@limiter.limit(lambda: current_app.config["SIGN_IN_RATE_LIMIT"])
def use_link(token: str) -> ResponseReturnValue:
    db = get_db()
    requested = requested_here(LINK)
    outcome = magic_links.use_link(
        db, token, requested.nonce if requested else None, requested.email if requested else None
    )
    if outcome is magic_links.Refused.DEAD:
        return link_invalid("sign_in")
    if outcome is magic_links.Refused.OTHER_BROWSER:
        page = render_template(
            "authn/magic_link.html", action=None, asked_here=False, failure=OTHER_BROWSER
        )
        return page, 401, {"WWW-Authenticate": WWW_AUTHENTICATE}
    assert isinstance(outcome, magic_links.Accepted) and requested is not None
    forget_request(LINK)
    return first_factor_proven(
        outcome.user,
        proof="magic_link",
        remember=requested.remember,
        next_path=requested.next_path,
        detail="with a link by email",
    )
