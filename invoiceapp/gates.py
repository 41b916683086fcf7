"""The order every request is checked in. Read this file first.

1. Authentication  (invoiceapp.authn.gate)        no session          -> 302 sign-in / 401
2. CSRF            (Flask-WTF, called from here)   unsafe, no token    -> 400
3. Scope           (invoiceapp.authz.scope)        other organization  -> 404
4. Authorization   (invoiceapp.authz.enforce)      policy says no      -> 403
5. Elevation       (invoiceapp.authz.enforce)      proof too old       -> re-authenticate
6. Rate limit      (Flask-Limiter, per view)       too many            -> 429

Gates 1 and 2 run here, before any view, followed by one check that is not about
identity at all: pages take form posts only, so any other body (JSON, text) is a 415.
Then one authorization refusal that needs no resource: a session in view-as mode (an owner
or admin looking as a member sees, invoiceapp.authz.view_as) gets a 403 for every write.

A CSRF token lasts as long as an idle session (WTF_CSRF_TIME_LIMIT). A page's form that
was open longer is still a 400 that changes nothing, but it comes back filled in with what
was typed and a fresh token (invoiceapp/stale_forms.py). Over HTTPS, Flask-WTF also wants
a same-site Referer; behind a TLS proxy the app sees HTTPS only with TRUSTED_PROXY_HOPS.

Gates 3 to 5 need the resource, so the view runs them at the action boundary, every
time. Rate limits sit on the sign-in and re-authentication forms, which have no
resource to scope, and on the whole API (per token and per user, invoiceapp.api);
Flask-Limiter checks them just before those views run.

The JSON API (/api/) takes the same session cookie, and then the same CSRF token, sent
in the ``X-CSRFToken`` header instead of a form field. A request proven by an API token
(``Authorization: Bearer``) needs none: a browser never attaches that header to a forged
cross-site request by itself, which is exactly what CSRF abuses cookies for.
"""

from __future__ import annotations

from flask import Flask, current_app, request
from flask_login import current_user
from werkzeug.exceptions import UnsupportedMediaType

from .authn.access_tokens import current_access_token
from .authn.gate import authentication_gate
from .authz.view_as import view_as_gate
from .extensions import csrf

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_MEDIA_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


# Posting here without a session changes nothing, so a stale tab may do it without a
# token and simply be told it is signed out. With a session, CSRF applies as everywhere.
_HARMLESS_WHEN_ANONYMOUS = frozenset({"authn.sign_out"})


def csrf_gate() -> None:
    if request.method not in current_app.config["WTF_CSRF_METHODS"]:
        return  # a GET carries no token to check; Flask-WTF says the same, only later
    if not current_app.config["WTF_CSRF_ENABLED"]:
        return
    if request.endpoint in _HARMLESS_WHEN_ANONYMOUS and not current_user.is_authenticated:
        return
    if request.path.startswith("/api/"):
        if request.routing_exception is not None:
            return  # no such API route or method: it changes nothing, so 404/405 it is
        if current_user.is_authenticated and current_access_token() is not None:
            return  # proven by a bearer token, not by a cookie the browser sent by itself
    csrf.protect(apply_exemptions=True)


def form_body_gate() -> None:
    """An HTML form route given JSON or text answers 415 and changes nothing."""
    if request.method not in UNSAFE_METHODS or request.path.startswith("/api/"):
        return
    if request.mimetype and request.mimetype not in FORM_MEDIA_TYPES:
        raise UnsupportedMediaType("This page accepts HTML form submissions only.")


def register_gates(app: Flask) -> None:
    # Order matters: an anonymous POST without a token is a 401, not a 400.
    app.before_request(authentication_gate)
    app.before_request(csrf_gate)
    app.before_request(form_body_gate)
    # View-as mode (an owner or admin looking as a member sees): every write is a 403 here,
    # before any view runs, so none can forget. Pages only; the API acts as the real user.
    app.before_request(view_as_gate)
