"""The /api/v1 blueprint: its rate limits and its cache headers (defaults: config.py).

Authentication (cookie or bearer token) and CSRF are the app's gates, the same as for
pages (invoiceapp.gates); every error, here or anywhere under /api/, is turned into the
one JSON shape by invoiceapp.errors.
"""

from __future__ import annotations

from functools import partial

from flask import Blueprint, Response, current_app, request
from flask_limiter.util import get_remote_address
from werkzeug.exceptions import BadRequest

from ..extensions import limiter, outage_safe_key
from ..principal import current_principal
from .registry import api_operation

bp = Blueprint("api", __name__, url_prefix="/api/v1")
operation = partial(api_operation, bp)


@outage_safe_key
def _per_credential() -> str:
    """The bucket of one token; a cookie request counts for its user; anonymous per address."""
    principal = current_principal()
    if principal is None:
        return "api-address:" + (get_remote_address() or "")
    if principal.access_token is not None:
        return "api-token:" + principal.access_token.public_id
    return f"api-session-user:{principal.user.id}"


@outage_safe_key
def _per_user() -> str:
    principal = current_principal()
    if principal is None:
        return "api-address:" + (get_remote_address() or "")
    return f"api-user:{principal.user.id}"


# Shared limits: one bucket for the whole API, not one per route.
limiter.shared_limit(
    lambda: current_app.config["API_RATE_LIMIT"], scope="api", key_func=_per_credential
)(bp)
limiter.shared_limit(
    lambda: current_app.config["API_USER_RATE_LIMIT"], scope="api-user", key_func=_per_user
)(bp)


# gunicorn answers a request line over 4,094 bytes itself, with a 414 that is not this
# API's JSON. Query strings are bounded well below that, so the app answers them.
MAX_QUERY_BYTES = 2048


class QueryTooLong(BadRequest):
    api_reason = "query_too_long"
    description = f"The query string is longer than {MAX_QUERY_BYTES:,} bytes."


@bp.before_request
def _bounded_query_string() -> None:
    if len(request.query_string) > MAX_QUERY_BYTES:
        raise QueryTooLong()


@bp.after_request
def _never_cached(response: Response) -> Response:
    """Answers depend on who asked (a token or a cookie), so no cache may keep them."""
    response.headers["Cache-Control"] = "no-store"
    response.vary.update(("Authorization", "Cookie"))
    return response
