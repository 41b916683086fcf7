"""The authentication gate: is there a valid session or API token? (401 is decided here.)

Runs as the first before_request hook (see invoiceapp.gates), so an anonymous
request is turned away before CSRF validation and before any view code runs.

Two kinds of proof are accepted: the session cookie everywhere, and on /api/ only a
personal access token in ``Authorization: Bearer …`` (invoiceapp.authn.access_tokens).
A request that presents a token is judged by the token alone, never by a cookie that
happens to ride along.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlencode

import flask_login
from flask import Flask, current_app, redirect, request, url_for
from werkzeug.exceptions import Unauthorized
from werkzeug.wrappers import Response

from ..audit import DENIED, record_audit
from ..extensions import login_manager
from ..models import User
from .access_tokens import bearer_credentials, load_access_token
from .sessions import load_session_from_cookie

F = TypeVar("F", bound=Callable[..., object])

# RFC 9110 requires WWW-Authenticate on a 401. A non-Basic scheme keeps browsers
# from popping up their own password dialog.
WWW_AUTHENTICATE = 'Session realm="InvoiceApp", sign-in="/sign-in"'
# The API's challenge (RFC 6750): present a bearer token. A token that was presented and
# refused (unknown, expired, revoked) adds error="invalid_token", and no more detail.
API_WWW_AUTHENTICATE = 'Bearer realm="InvoiceApp"'
API_WWW_AUTHENTICATE_INVALID_TOKEN = 'Bearer realm="InvoiceApp", error="invalid_token"'


class SignInRequired(Unauthorized):
    """401: no proven identity. A sign-in would fix it."""

    description = "You need to sign in to do that."


def login_required(view: F) -> F:
    """Mark a view as needing a principal. The gate checks the mark before CSRF runs;
    Flask-Login's own check stays on as a second line if the gate were ever bypassed."""
    wrapped = flask_login.login_required(view)
    wrapped.requires_principal = True  # flask_login is untyped, so mypy takes this as is
    return wrapped


def is_page_visit() -> bool:
    """A browser navigating to a page, as opposed to a form post or an API call."""
    return request.method in ("GET", "HEAD") and not request.path.startswith("/api/")


def _sign_in_url_for_this_page() -> str:
    target = request.full_path if request.query_string else request.path
    # "/" stays readable (/sign-in?next=/dashboard, as CONTRACT §4 writes it); "?", "&",
    # "=" and "#" of the target are still encoded, so the target arrives whole.
    return url_for("authn.sign_in_form") + "?" + urlencode({"next": target}, safe="/")


@login_manager.unauthorized_handler
def unauthenticated() -> Response:
    """The one place an anonymous request to a protected route is answered."""
    if is_page_visit():
        return redirect(_sign_in_url_for_this_page(), code=302)
    record_audit(
        request.endpoint or "unrouted",  # never the path: on some routes it holds a token
        organization_id=None,
        decision=DENIED,
        status=401,
        reason="No signed-in session",
        rule="sign-in required",
    )
    raise SignInRequired()


@login_manager.request_loader
def load_user_from_request(_request: object) -> User | None:
    """The user a bearer token (API only) or else the session cookie proves; None if neither."""
    if bearer_credentials() is not None:
        token = load_access_token()
        return token.user if token is not None else None
    auth_session = load_session_from_cookie()
    # No query of its own: the session's statement loaded its user too.
    return auth_session.user if auth_session is not None else None


def authentication_gate() -> Response | None:
    view = current_app.view_functions.get(request.endpoint or "")
    if not getattr(view, "requires_principal", False):
        return None  # open to everyone: current_user is loaded only if something asks
    user = load_user_from_request(request)
    # Kept where Flask-Login's current_user looks for this request's user, so neither
    # current_user nor @login_required runs Flask-Login's loader again (its signals, its
    # session-protection hash, its reads of Flask's cookie session): about 0.01 ms of CPU
    # per protected page (SQLite, measured in process). The decision is unchanged: no user,
    # no entry, and the 401 or sign-in redirect still comes from unauthenticated() below.
    login_manager._update_request_context_with_user(user)
    if user is None:
        return login_manager.unauthorized()
    return None


def init_authentication(app: Flask) -> None:
    # No ``current_user`` in templates: they get the principal from invoiceapp.templating,
    # and an error page must be able to render without another database lookup.
    login_manager.init_app(app, add_context_processor=False)
    # Sessions are ours (server-side); Flask-Login neither stores ids in the cookie
    # session nor sets its remember-me cookie.
    login_manager.session_protection = None
    # So its after-request hook for that cookie has nothing to do, yet it read Flask's
    # cookie session on every response. The "Vary: Cookie" that read made Flask add is
    # now added by invoiceapp.cookie_session itself.
    app.after_request_funcs[None].remove(login_manager._update_remember_cookie)
