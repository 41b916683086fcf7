"""InvoiceApp: a small invoices SaaS that keeps authentication and authorization apart.

Where things are decided (see also invoiceapp/gates.py):
- 401: invoiceapp/authn/gate.py        (no valid session)
- 404: invoiceapp/authz/scope.py       (not in your organizations, or missing)
- 403: invoiceapp/authz/enforce.py     (policy table in invoiceapp/authz/policy.py)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask

from .cookie_session import SignedCookieSessions
from .flask_app import InvoiceApp, refuse_async_functions

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = InvoiceApp(
        __name__,
        instance_path=str(ROOT / "instance"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    from .config import load_config, refuse_undelivered_mail

    load_config(app, config)
    app.session_interface = SignedCookieSessions()  # Flask's, opened with less work
    refuse_undelivered_mail(app)
    trust_proxies(app)
    limit_chunked_bodies(app)
    answer_health_checks_for_any_host(app)
    register_database(app)
    register_extensions(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_template_helpers(app)
    register_commands(app)
    refuse_async_functions(app)  # InvoiceApp runs every function as it is
    return app


def trust_proxies(app: Flask) -> None:
    """Behind N proxies, take the client address from X-Forwarded-For (rate limits, sessions)."""
    hops = int(app.config["TRUSTED_PROXY_HOPS"])
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    log_how_https_is_recognised(app, hops)


def log_how_https_is_recognised(app: Flask, hops: int) -> None:
    """Say at start-up which requests count as HTTPS, and so get the CSRF Referer check.

    Over HTTPS, Flask-WTF also wants a same-site Referer on every unsafe request. Behind a
    TLS-terminating proxy the app sees HTTPS only through X-Forwarded-Proto, which it
    believes only with TRUSTED_PROXY_HOPS set; with 0 that check is silently skipped.
    """
    if app.testing:
        return
    if hops > 0:
        app.logger.info(
            "TRUSTED_PROXY_HOPS=%d: the scheme and client address come from the nearest "
            "proxies' X-Forwarded-Proto/-For; forms posted over HTTPS get the CSRF Referer check.",
            hops,
        )
        return
    # A warning where HTTPS is expected (Secure cookies, no debug or demo): the usual case
    # is a TLS proxy in front whose X-Forwarded-Proto nobody believes.
    deployed = app.config["SESSION_COOKIE_SECURE"] and not (app.debug or app.config["DEMO_MODE"])
    app.logger.log(
        logging.WARNING if deployed else logging.INFO,
        "TRUSTED_PROXY_HOPS=0: X-Forwarded-Proto is ignored. Requests count as HTTPS, and get "
        "the CSRF Referer check, only when they reach this server over TLS itself (gunicorn "
        "--certfile); behind a TLS-terminating proxy the Referer check is skipped. Set "
        "FLASK_TRUSTED_PROXY_HOPS to the number of proxies; /readyz shows how a request is seen.",
    )


def limit_chunked_bodies(app: Flask) -> None:
    """MAX_CONTENT_LENGTH also for bodies without a Content-Length (see body_limit.py)."""
    from .body_limit import ChunkedBodyLimit, refuse_oversized_body

    app.wsgi_app = ChunkedBodyLimit(  # type: ignore[method-assign]
        app.wsgi_app, lambda: app.config["MAX_CONTENT_LENGTH"]
    )
    app.before_request(refuse_oversized_body)  # the first: before the gates read anything


def answer_health_checks_for_any_host(app: Flask) -> None:
    """Load balancers probe /healthz and /readyz by IP address (see health_hosts.py)."""
    from .health_hosts import HealthChecksForAnyHost

    app.wsgi_app = HealthChecksForAnyHost(  # type: ignore[method-assign]
        app.wsgi_app, lambda: app.config["TRUSTED_HOSTS"]
    )


def register_database(app: Flask) -> None:
    from .db import init_db

    init_db(app)


def register_extensions(app: Flask) -> None:
    from . import background
    from .authn.gate import init_authentication
    from .authn.passwords import init_passwords
    from .authn.sessions import init_sessions
    from .extensions import (
        csrf,
        limiter,
        refund_attempts_that_did_not_fail,
        skip_routes_without_limits,
    )
    from .gates import register_gates
    from .security_headers import init_security_headers

    init_authentication(app)
    init_passwords(app)  # the unknown-email dummy hash, before the first sign-in
    init_sessions(app)
    init_security_headers(app)
    csrf.init_app(app)
    register_gates(app)  # authentication, then CSRF: before any view runs
    limiter.init_app(app)
    skip_routes_without_limits(app)  # pages without limits never ask the limiter
    app.after_request(refund_attempts_that_did_not_fail)  # failure-only limits
    background.init_app(app)  # forgot-password's look-up and mail, off the request worker


def register_blueprints(app: Flask) -> None:
    from .api import bp as api_bp
    from .tour import init_tour
    from .views.account.email_sign_in import bp as email_sign_in_bp
    from .views.account.recovery import bp as recovery_bp
    from .views.account.settings import bp as account_bp
    from .views.account.sign_in import bp as authn_bp
    from .views.account.sign_in_methods import bp as sign_in_methods_bp
    from .views.account.signup import bp as signup_bp
    from .views.account.tokens import bp as account_tokens_bp
    from .views.account.two_factor import bp as two_factor_bp
    from .views.audit import bp as audit_bp
    from .views.claim_address import bp as claim_address_bp
    from .views.demo import bp as demo_bp
    from .views.dev_mail import bp as dev_mail_bp
    from .views.exercises import bp as exercises_bp
    from .views.health import bp as health_bp
    from .views.invitations import bp as invitations_bp
    from .views.invoices import bp as invoices_bp
    from .views.org_security import bp as org_security_bp
    from .views.orgs import bp as orgs_bp
    from .views.pages import bp as pages_bp
    from .views.shares import bp as shares_bp
    from .views.support import bp as support_bp
    from .views.tour import bp as tour_bp
    from .views.view_as import bp as view_as_bp

    app.register_blueprint(pages_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(authn_bp)
    app.register_blueprint(email_sign_in_bp)
    app.register_blueprint(signup_bp)
    app.register_blueprint(recovery_bp)
    app.register_blueprint(claim_address_bp)
    app.register_blueprint(two_factor_bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(sign_in_methods_bp)
    app.register_blueprint(account_tokens_bp)
    app.register_blueprint(invoices_bp)
    app.register_blueprint(orgs_bp)
    app.register_blueprint(view_as_bp)
    app.register_blueprint(org_security_bp)
    app.register_blueprint(invitations_bp)
    app.register_blueprint(shares_bp)
    app.register_blueprint(support_bp)
    app.register_blueprint(audit_bp)
    app.register_blueprint(dev_mail_bp)
    app.register_blueprint(tour_bp)
    app.register_blueprint(exercises_bp)
    app.register_blueprint(demo_bp)
    init_tour(app)  # the tour's check marks, read off real responses (demo mode only)
    app.register_blueprint(api_bp)


def register_error_handlers(app: Flask) -> None:
    from .errors import register_error_handlers as register

    register(app)


def register_template_helpers(app: Flask) -> None:
    from .templating import init_templating

    init_templating(app)


def register_commands(app: Flask) -> None:
    from .cli import register_commands as register

    register(app)
