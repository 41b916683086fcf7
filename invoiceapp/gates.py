"""The order every request is checked in. Read this file first.

1. Authentication  (invoiceapp.authn.gate)        no session          -> 302 sign-in / 401
2. CSRF            (Flask-WTF, called from here)   unsafe, no token    -> 400
3. Scope           (invoiceapp.authz.scope)        other organization  -> 404
4. Authorization   (invoiceapp.authz.enforce)      policy says no      -> 403
5. Elevation       (invoiceapp.authz.enforce)      proof too old       -> re-authenticate
6. Rate limit      (Flask-Limiter, per view)       too many            -> 429

Gates 1 and 2 run here, before any view. Gates 3 to 5 need the resource, so the
view runs them at the action boundary, every time. Rate limits sit only on the
sign-in and re-authentication forms, which have no resource to scope; Flask-Limiter
checks them just before those views run.
"""

from __future__ import annotations

from flask import Flask, current_app

from .authn.gate import authentication_gate
from .extensions import csrf


def csrf_gate() -> None:
    if current_app.config["WTF_CSRF_ENABLED"]:
        csrf.protect(apply_exemptions=True)


def register_gates(app: Flask) -> None:
    # Order matters: an anonymous POST without a token is a 401, not a 400.
    app.before_request(authentication_gate)
    app.before_request(csrf_gate)
