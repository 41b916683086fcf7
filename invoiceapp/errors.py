"""Error pages: HTML in the site layout for pages, one JSON shape for /api/.

The 404 says nothing about what was asked for, so a missing id and another
organization's id give the same bytes. The 500 shows no trace.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Flask, current_app, g, jsonify, redirect, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.wrappers import Response

from .authn.gate import WWW_AUTHENTICATE
from .authz.enforce import ReauthenticationRequired
from .extensions import login_manager

API_CODES = {
    400: "validation",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "validation",
    409: "conflict",
    413: "validation",
    422: "validation",
    429: "rate_limited",
    500: "internal",
}

TITLES = {
    400: "Bad request",
    401: "Sign in required",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    413: "Request too large",
    429: "Too many requests",
    500: "Something went wrong",
}


def wants_json() -> bool:
    return request.path.startswith("/api/")


def _api_error(status: int, message: str, reason: str | None = None) -> Response:
    body: dict[str, object] = {"code": API_CODES.get(status, "internal"), "message": message}
    if reason:
        body["reason"] = reason
    response = jsonify({"error": body})
    response.status_code = status
    return response


def handle_http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if status >= 500:
        _forget_the_request_state()
    decision = getattr(error, "decision", None)
    if wants_json():
        reason = decision.reason if decision is not None else None
        response = _api_error(status, error.description or TITLES.get(status, ""), reason)
    else:
        html = render_template(
            "errors/error.html",
            status=status,
            title=TITLES.get(status, error.name),
            message=_message_for(error, status),
            decision=decision,
            plain_header=True,  # no forms, so no per-request tokens: a 404 is always the same bytes
        )
        response = Response(html, status=status, mimetype="text/html")
    if status == 401:
        response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    if status == 405:
        for name, value in error.get_headers():
            if name.lower() == "allow":
                response.headers["Allow"] = value
    retry_after = getattr(error, "retry_after", None)
    if status == 429:
        response.headers.setdefault("Retry-After", str(retry_after or 60))
    return response


def _forget_the_request_state() -> None:
    """Render a 500 without touching the database again: it may be what failed."""
    db = g.get("db")
    if db is not None:
        db.rollback()
    g.minimal_layout = True
    g._login_user = login_manager.anonymous_user()  # Flask-Login's per-request cache


def _message_for(error: HTTPException, status: int) -> str:
    if status == 404:
        # Never echo the id or say why: "missing" and "not yours" must look the same.
        return "There is nothing here, or it is not yours to see."
    if status == 500:
        return "An unexpected error happened on our side. It has been logged."
    if isinstance(error, CSRFError):
        return "The form had expired or did not come from this site. Reload the page and try again."
    return error.description or ""


def handle_reauthentication(error: ReauthenticationRequired) -> Response:
    if not wants_json():
        return redirect("/reauthenticate?" + urlencode({"next": error.next_path}), code=302)
    response = _api_error(401, error.description or "", "reauthentication_required")
    response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response


def handle_unexpected(error: Exception) -> Response:
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    return handle_http_error(InternalServerError())


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ReauthenticationRequired, handle_reauthentication)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
