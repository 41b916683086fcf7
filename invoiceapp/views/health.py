"""Health checks for load balancers and orchestrators: public, JSON, no versions.

Both answer whatever Host the request names (invoiceapp/health_hosts.py): load balancers
probe by IP address, and neither page builds a link from the host.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is up and answering. Touches nothing else."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Ready for traffic: the database answers (and Redis, when rate limits live there)."""
    checks = {"database": _database_ok()}
    if current_app.config["RATELIMIT_STORAGE_URI"].startswith(("redis://", "rediss://")):
        checks["redis"] = _redis_ok()
    ready = all(checks.values())
    body: dict[str, object] = {
        "status": "ok" if ready else "unavailable",
        "checks": checks,
        "request": _as_seen(),
    }
    if current_app.extensions.get("mail_stays_on_the_server"):
        # Allowed with MAIL_FILE_BACKEND_ALLOWED; whoever deploys should still see it.
        body["mail"] = "written to files on this server (MAIL_BACKEND=file), not sent"
    response = jsonify(body)
    response.status_code = 200 if ready else 503
    if not ready:
        response.headers["Retry-After"] = str(current_app.config["DATABASE_RETRY_AFTER_SECONDS"])
    return response


def _as_seen() -> dict[str, object]:
    """How this request looks to the app: behind a TLS proxy, "http" here means that
    TRUSTED_PROXY_HOPS is too low and forms are posted without the CSRF Referer check."""
    config = current_app.config
    referer_check = (
        request.is_secure and config["WTF_CSRF_ENABLED"] and config["WTF_CSRF_SSL_STRICT"]
    )
    return {"scheme": request.scheme, "csrf_referer_check": referer_check}


def _database_ok() -> bool:
    try:
        with current_app.extensions["db_engine"].connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except SQLAlchemyError:
        return False


def _redis_ok() -> bool:
    from ..extensions import limiter

    try:
        return bool(limiter.storage.check())
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return False
