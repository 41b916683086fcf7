"""Peer: Flask-Security-Too (its sign-in, its session authentication and its role check),
on Flask's signed-cookie session.

Flask-Security-Too puts the user's fs_uniquifier in the cookie: changing it (a password
change can) signs out every copy of that user's cookie at once, but one stolen cookie
cannot be ended alone, and signing out clears only the browser's own copy.

    cd bench/peers && gunicorn "security_too:create_app()"  # FLASK_SECRET_KEY, FLASK_DATABASE_URL
    python bench/peers/security_too.py seed <database url>
"""

from __future__ import annotations

import os
import secrets
import sys
from typing import Any

import shape
from flask import Flask, abort, render_template
from flask_security import (
    RoleMixin,
    Security,
    SQLAlchemySessionUserDatastore,
    UserMixin,
    auth_required,
    current_user,
    hash_password,
    roles_accepted,
)
from jinja2 import DictLoader

models = shape.make_models(UserMixin, RoleMixin)

SETTINGS = {
    "SECURITY_PASSWORD_SALT": "bench-only-salt",
    "SECURITY_PASSWORD_HASH": "argon2",
    "SECURITY_PASSWORD_COMPLEXITY_CHECKER": None,
    "WTF_CSRF_ENABLED": False,  # as in InvoiceApp's bench: sign in with a plain POST
    "SECURITY_CSRF_IGNORE_UNAUTH_ENDPOINTS": True,
    "SECURITY_TRACKABLE": False,
    # The demo's addresses end in .test, which email-validator refuses unless told.
    "SECURITY_EMAIL_VALIDATOR_ARGS": {"check_deliverability": False, "test_environment": True},
}


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(SETTINGS)
    app.config.from_prefixed_env()
    session = shape.init_database(app)
    app.jinja_loader = DictLoader({"invoice.html": shape.PAGE})  # compiled once, cached
    Security(app, SQLAlchemySessionUserDatastore(session, models.User, models.Role))

    @app.get("/invoices/<public_id>")
    @auth_required("session")  # 401 without a signed-in cookie
    @roles_accepted(*shape.ROLES_THAT_MAY_READ)  # the one permission check (403)
    def show(public_id: str) -> Any:
        found = shape.visible_invoice(models, current_user.id, public_id)
        if found is None:
            abort(404)  # not in one of their organizations: as if it did not exist
        invoice, role = found
        return render_template("invoice.html", invoice=invoice, role=role, padding=shape.PADDING)

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    return app


def seed(url: str) -> None:
    os.environ["FLASK_DATABASE_URL"] = url
    os.environ.setdefault("FLASK_SECRET_KEY", secrets.token_hex(32))
    app = create_app()
    with app.app_context():
        owner = models.Role(name="owner")
        user = models.User(
            email=shape.EMAIL,
            password=hash_password(shape.PASSWORD),
            fs_uniquifier=secrets.token_hex(16),
            roles=[owner],
        )
    shape.create_all(models, url, user)


if __name__ == "__main__" and sys.argv[1:2] == ["seed"]:
    seed(sys.argv[2])
