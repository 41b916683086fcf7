"""Error pages: HTML in the site layout for pages, one JSON shape for /api/.

The 404 says nothing about what was asked for, so a missing id and another
organization's id give the same bytes. The 500 shows no trace.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Flask, current_app, g, jsonify, redirect, render_template, request
from flask.globals import request_ctx
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable
from werkzeug.wrappers import Response

from .authn.access_tokens import current_access_token, presented_invalid_token
from .authn.gate import (
    API_WWW_AUTHENTICATE,
    API_WWW_AUTHENTICATE_INVALID_TOKEN,
    WWW_AUTHENTICATE,
)
from .authz.enforce import PermissionDenied, ReauthenticationRequired
from .authz.explain import Why, why
from .db import is_database_unavailable
from .extensions import limiter, login_manager
from .logs import init_logging, route_for_log
from .stale_forms import EXPIRED, refilled_form_page, token_lifetime_in_words

# The API's error codes (CONTRACT section 6): the one table. api/schemas.py and
# api/openapi.py read it; nothing else spells them.
API_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}

TITLES = {
    400: "Bad request",
    401: "Sign in required",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported form data",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Busy, try again shortly",
}


def wants_json() -> bool:
    return request.path.startswith("/api/")


def _api_error(
    status: int,
    message: str,
    reason: str | None = None,
    fields: dict[str, list[str]] | None = None,
) -> Response:
    """The one error shape of the API: {"error": {"code", "message", "reason"?, "fields"?}}."""
    # A status the contract names no code for is still a client or a server problem.
    code = API_CODES.get(status) or ("bad_request" if status < 500 else "internal")
    body: dict[str, object] = {"code": code, "message": message}
    if reason:
        body["reason"] = reason
    if fields:
        body["fields"] = fields
    response = jsonify({"error": body})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


# Flask-WTF's own descriptions of the Referer check it makes over HTTPS, after the token
# passed: an API client sent the token, so "send the token" would be the wrong advice.
REFERER_REFUSALS = {
    "The referrer header is missing.": (
        "Over HTTPS, a write with the session cookie must also carry a Referer header from "
        "this site, and this request had none (its CSRF token was not the problem). Send "
        "Referer: the site's address, or use an access token (Authorization: Bearer …)."
    ),
    "The referrer does not match the host.": (
        "Over HTTPS, a write with the session cookie must carry a Referer header from this "
        "site, and this one names another site (its CSRF token was not the problem). Send "
        "the site's own address as Referer, or use an access token (Authorization: Bearer …)."
    ),
}


def _api_reason(error: HTTPException) -> str | None:
    """A short machine-readable word for clients to branch on, when there is one."""
    if isinstance(error, CSRFError):
        return "csrf_referer" if error.description in REFERER_REFUSALS else "csrf"
    if error.code == 401 and presented_invalid_token():
        return "invalid_token"
    decision = getattr(error, "decision", None)
    if decision is not None:
        return decision.details.get("api_reason")
    return getattr(error, "api_reason", None)


UNTRUSTED_HOST = "This server does not answer for the host name in the Host header."


def _api_message(error: HTTPException, status: int) -> str:
    decision = getattr(error, "decision", None)
    if decision is not None:
        # A 403 names the refused action and what was missing, never the resource's data.
        missing = f" (needs {decision.missing})" if decision.missing else ""
        return f"{decision.action} refused: {decision.reason}{missing}"
    if status == 401 and presented_invalid_token():
        return "This access token is not valid: it is unknown, expired or revoked."
    if status == 401:
        return "Authenticate with an access token (Authorization: Bearer …) or a session."
    if status == 404:
        return "There is nothing here, or it is not yours to see."  # the same for both
    if status == 500:
        return "An unexpected error happened on our side. It has been logged."
    if isinstance(error, CSRFError) and error.description == EXPIRED:
        return (
            f"The CSRF token has expired (tokens last {token_lifetime_in_words()}): "
            "read a fresh one from a page and send it in the X-CSRFToken header."
        )
    if isinstance(error, CSRFError) and error.description in REFERER_REFUSALS:
        return REFERER_REFUSALS[error.description]
    if isinstance(error, CSRFError):
        return "Send the CSRF token in the X-CSRFToken header (a bearer token needs none)."
    return error.description or TITLES.get(status, "")


def _api_challenge() -> str:
    """RFC 6750: say invalid_token only when a token was presented and refused."""
    if presented_invalid_token():
        return API_WWW_AUTHENTICATE_INVALID_TOKEN
    return API_WWW_AUTHENTICATE


def handle_http_error(error: HTTPException) -> Response:
    original = getattr(error, "original_exception", None)
    if isinstance(error, InternalServerError) and original is not None:
        if is_database_unavailable(original):
            # The database went away while an answer was being made (a 403 page's "Why?"
            # reads custom roles): the same 503 as anywhere else, not a 500.
            error = DatabaseUnavailable()
    status = error.code or 500
    if request_ctx.url_adapter is None and wants_json():
        # An untrusted Host header under /api/: the API's JSON, like every other answer there.
        return _api_error(status, UNTRUSTED_HOST, "untrusted_host")
    if request_ctx.url_adapter is None:
        # Refused before routing (an untrusted Host header): no URLs can be built, so no
        # page layout either. A plain line says what happened.
        return Response(
            f"{status} {TITLES.get(status, error.name)}\n", status, mimetype="text/plain"
        )
    if status >= 500:
        _forget_the_request_state()
    decision = getattr(error, "decision", None)
    if wants_json():
        response = _api_error(
            status, _api_message(error, status), _api_reason(error), getattr(error, "fields", None)
        )
    else:
        html = render_template(
            "errors/error.html",
            status=status,
            title=TITLES.get(status, error.name),
            message=_message_for(error, status),
            decision=decision,
            why=_why(error),
            plain_header=True,  # no forms, so no per-request tokens: a 404 is always the same bytes
        )
        response = Response(html, status=status, mimetype="text/html")
    if status == 401:
        response.headers["WWW-Authenticate"] = (
            _api_challenge() if wants_json() else WWW_AUTHENTICATE
        )
    if status == 403 and wants_json() and current_access_token() is not None:
        if _api_reason(error) == "insufficient_scope":
            response.headers["WWW-Authenticate"] = (
                API_WWW_AUTHENTICATE + ', error="insufficient_scope", scope="write"'
            )
    if status == 405:
        for name, value in error.get_headers():
            if name.lower() == "allow":
                response.headers["Allow"] = value
    retry_after = getattr(error, "retry_after", None)
    if status == 429:
        response.headers["Retry-After"] = str(_seconds_until_retry())
    if status == 503:
        response.headers["Retry-After"] = str(
            retry_after or current_app.config["DATABASE_RETRY_AFTER_SECONDS"]
        )
    return response


def _why(error: HTTPException) -> Why | None:
    """A refusal's "Why?" section: the caller's own decision, the same one the API's
    /authz/explain gives. Only 403s have one; a 404 says nothing, by design."""
    if not isinstance(error, PermissionDenied):
        return None
    return why(error.decision.action, error.resource, error.decision)


def _forget_the_request_state() -> None:
    """Render a 500 without touching the database again: it may be what failed."""
    db = g.get("db")
    if db is not None:
        try:
            db.rollback()
        except DBAPIError:  # the connection itself is gone; the pool replaces it
            db.invalidate()
    g.minimal_layout = True
    g._login_user = login_manager.anonymous_user()  # Flask-Login's per-request cache


def _message_for(error: HTTPException, status: int) -> str:
    if status == 404:
        # Never echo the id or say why: "missing" and "not yours" must look the same.
        return "There is nothing here, or it is not yours to see."
    if status == 500:
        return "An unexpected error happened on our side. It has been logged."
    if status == 429:
        return (
            "There have been too many attempts. For your safety, please wait "
            f"{in_words(_seconds_until_retry())} and try again."
        )
    if status == 503:
        return (
            "The database is busy or unreachable right now. "
            "Nothing was changed; please try again in a few seconds."
        )
    if isinstance(error, CSRFError):
        return _csrf_message(error)
    return error.description or ""


def _csrf_message(error: CSRFError) -> str:
    """Why a page's form was refused, in words that say what to do next."""
    if error.description == EXPIRED:
        return (
            f"This page was open for more than {token_lifetime_in_words()}, so for your "
            "safety the form was not sent and nothing changed. Go back, reload the page "
            "and try again."
        )
    if error.description == "The referrer header is missing.":
        return (
            "Your browser sent this form without saying which page it came from (the "
            "Referer header), which this site needs over HTTPS to know the form is its own. "
            "Allow it for this site, reload the page and try again."
        )
    return "The form had expired or did not come from this site. Reload the page and try again."


def handle_csrf_error(error: CSRFError) -> Response:
    """A page's stale form comes back filled in (stale_forms.py); anything else is the 400."""
    if not wants_json():
        refilled = refilled_form_page(error)
        if refilled is not None:
            return refilled
    return handle_http_error(error)


def _seconds_until_retry() -> int:
    """When the rate limit that refused this request lets the next one through."""
    limit = limiter.current_limit
    if limit is None:
        return 60
    return max(1, int(limit.reset_at - time.time()))


def in_words(seconds: int) -> str:
    """ "about 3 minutes": what a person reads on a 429 page (the header has the number)."""
    if seconds < 60:
        return "a minute" if seconds > 45 else f"about {seconds} seconds"
    minutes = round(seconds / 60)
    if minutes < 55:
        return "about a minute" if minutes == 1 else f"about {minutes} minutes"
    hours = round(minutes / 60)
    return "about an hour" if hours == 1 else f"about {hours} hours"


def handle_reauthentication(error: ReauthenticationRequired) -> Response:
    if not wants_json():
        return redirect(error.location, code=302)
    response = _api_error(401, error.description or "", "reauthentication_required")
    response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response


class DatabaseUnavailable(ServiceUnavailable):
    """503: the database is locked by another writer, or down. Not a bug: try again."""


def handle_database_error(error: SQLAlchemyError) -> Response:
    if not is_database_unavailable(error):
        return handle_unexpected(error)
    # One line, no statement or parameters: those may hold personal data. The route's rule,
    # not the path: /reset-password/<token>'s path is a live token (invoiceapp.logs).
    current_app.logger.warning(
        "database unavailable on %s %s: %s", request.method, route_for_log(), type(error).__name__
    )
    return handle_http_error(DatabaseUnavailable())


def handle_unexpected(error: Exception) -> Response:
    current_app.logger.exception("unhandled error on %s %s", request.method, route_for_log())
    return handle_http_error(InternalServerError())


def register_error_handlers(app: Flask) -> None:
    init_logging(app)
    app.register_error_handler(ReauthenticationRequired, handle_reauthentication)
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(SQLAlchemyError, handle_database_error)
    app.register_error_handler(Exception, handle_unexpected)


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON body for the few page endpoints a script calls (passkeys)."""
    text = body if isinstance(body, str) else json.dumps(body)
    return Response(text, status=status, mimetype="application/json")


def json_error(status: int, message: str, reason: str | None = None, **extra: str) -> Response:
    """The API's error shape (CONTRACT §6), for the few JSON endpoints pages use; ``extra``
    adds keys for the page's script (where to send the browser)."""
    error: dict[str, str] = {"code": API_CODES.get(status, "bad_request"), "message": message}
    if reason:
        error["reason"] = reason
    error.update(extra)
    response = json_response({"error": error}, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response
