"""A form left open too long: refuse it, say why, and give back what was typed.

CSRF tokens expire with an idle session (``WTF_CSRF_TIME_LIMIT``, by default
``SESSION_IDLE_SECONDS``), so a form left open over lunch gets the CSRF gate's 400 and
changes nothing. A bare error page would also throw away what the person typed. So when
the token is one this browser was given, and only its age is wrong, the page the form
came from is drawn again: filled in with what was posted, except passwords and one-time
codes, with a fresh token and a message saying what happened. Still a 400.

Anything else keeps the plain 400 page: no token, another browser's token, no Referer.
Drawing a forged post's values into a form of ours would let another site fill in our
forms for the person to send. (A cross-site post carries no session cookie at all, since
it is SameSite=Lax, so it can never pass the "this browser's token" test below.)
"""

from __future__ import annotations

import hmac
import re

from flask import current_app, flash, g, request, session
from flask.globals import request_ctx
from flask_wtf.csrf import CSRFError
from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response
from wtforms import Form, PasswordField

from .mail import duration_in_words

# Flask-WTF's reason when the signature is good and only the age is wrong.
EXPIRED = "The CSRF token has expired."

# Never drawn back into a page: what must be typed again rather than sit in HTML.
_NEVER_REFILLED = re.compile(r"password|code|csrf|token|secret", re.IGNORECASE)


def token_lifetime_in_words() -> str:
    """ "30 minutes": how long a form may stay open, as the messages say it."""
    return duration_in_words(int(current_app.config["WTF_CSRF_TIME_LIMIT"]))


def is_this_browsers_expired_token(error: CSRFError) -> bool:
    """True when the posted token expired and was issued to this very browser.

    Flask-WTF checks the age before comparing the token with the session's secret, so an
    "expired" answer alone could come from anyone's old token; this compares as well.
    """
    if error.description != EXPIRED:
        return False
    field = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    posted, secret = request.form.get(field), session.get(field)
    if not posted or not isinstance(secret, str):
        return False
    key = current_app.config.get("WTF_CSRF_SECRET_KEY") or current_app.secret_key
    if not key:
        return False  # nothing was signed without a key
    try:
        # The signature is checked again; only the age is ignored.
        value = URLSafeTimedSerializer(key, salt="wtf-csrf-token").loads(posted)
    except BadData:
        return False
    return isinstance(value, str) and hmac.compare_digest(value, secret)


def typed_values(form: Form) -> MultiDict[str, str]:
    """What was posted, minus what must be typed again (used by forms.Form while refilling)."""
    secret = {field.name for field in form if _is_secret(field)}
    return MultiDict(
        [
            (name, value)
            for name, value in request.form.items(multi=True)
            if name not in secret and not _NEVER_REFILLED.search(name)
        ]
    )


def _is_secret(field: object) -> bool:
    autocomplete = (getattr(field, "render_kw", None) or {}).get("autocomplete")
    return isinstance(field, PasswordField) or autocomplete == "one-time-code"


def refilling() -> bool:
    """While a stale form's page is drawn again, every form on it reads typed_values()."""
    return bool(g.get("refilling_stale_form"))


def refilled_form_page(error: CSRFError) -> Response | None:
    """The page this form came from, filled in again, as a 400; None when there is none.

    "The page it came from" is the GET view at the same URL (/sign-in, /invoices/<id>/edit,
    /reset-password/<token>, ...). A view that answers GET and POST alike is never run:
    under a POST it would act.
    """
    if request.method != "POST" or not is_this_browsers_expired_token(error):
        return None
    adapter = current_app.create_url_adapter(request)
    if adapter is None:
        return None
    try:
        endpoint, arguments = adapter.match(method="GET")
    except HTTPException:  # no page at this URL (a one-button post): nothing to refill
        return None
    if endpoint == request.endpoint:
        return None

    notice = (
        "error",
        f"This form was open for more than {token_lifetime_in_words()}, so for your safety "
        "it was not sent and nothing changed. What you typed is filled in again, except "
        "passwords and codes: check it and send it again.",
    )
    flash(notice[1], notice[0])
    g.refilling_stale_form = True
    try:
        view = current_app.ensure_sync(current_app.view_functions[endpoint])  # as Flask calls it
        response = current_app.make_response(view(**arguments))
    except HTTPException:  # the page itself refuses now (gone, not allowed): the plain 400
        response = None
    finally:
        g.refilling_stale_form = False
    if response is None or response.status_code != 200:
        _withdraw_flash(notice)
        return None
    response.status_code = 400
    return response


def _withdraw_flash(entry: tuple[str, str]) -> None:
    """Take the notice back when no refilled page shows it (it promises one)."""
    stored = session.get("_flashes")
    if stored and entry in stored:
        stored.remove(entry)
        session.modified = True
    shown = request_ctx.flashes
    if shown and entry in shown:
        shown.remove(entry)
