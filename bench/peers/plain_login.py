"""Peer: plain Flask-Login and a hand-written role check, on Flask's signed-cookie session.

What most small Flask apps do. Signing out clears the cookie in that browser, but the
server keeps nothing: a copy of the cookie taken earlier still signs in until the secret
key changes (there is no session to revoke).

    cd bench/peers && gunicorn "plain_login:create_app()"  # FLASK_SECRET_KEY, FLASK_DATABASE_URL
    python bench/peers/plain_login.py seed <database url>
"""

from __future__ import annotations

import secrets
import sys
from typing import Any

import shape
from argon2 import PasswordHasher, profiles
from flask import Flask, abort, render_template, request
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user
from jinja2 import DictLoader
from sqlalchemy import select

models = shape.make_models(UserMixin)
# Signing in is not what is measured; the cheapest Argon2id keeps the set-up quick.
hasher = PasswordHasher.from_parameters(profiles.CHEAPEST)


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.from_prefixed_env()
    shape.init_database(app)
    app.jinja_loader = DictLoader({"invoice.html": shape.PAGE})  # compiled once, cached
    login_manager = LoginManager(app)

    @login_manager.user_loader
    def load_user(user_id: str) -> Any:
        return shape.db().get(models.User, int(user_id))

    @app.post("/sign-in")
    def sign_in() -> Any:
        user = shape.db().scalar(
            select(models.User).where(models.User.email == request.form["email"])
        )
        if user is None or not hasher.verify(user.password, request.form["password"]):
            abort(401)
        login_user(user)
        return "", 303

    @app.get("/invoices/<public_id>")
    @login_required  # 401 without a signed-in cookie
    def show(public_id: str) -> Any:
        found = shape.visible_invoice(models, current_user.id, public_id)
        if found is None:
            abort(404)  # not in one of their organizations: as if it did not exist
        invoice, role = found
        if role not in shape.ROLES_THAT_MAY_READ:  # the one permission check
            abort(403)
        return render_template("invoice.html", invoice=invoice, role=role, padding=shape.PADDING)

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    return app


def seed(url: str) -> None:
    user = models.User(
        email=shape.EMAIL, password=hasher.hash(shape.PASSWORD), fs_uniquifier=secrets.token_hex(16)
    )
    shape.create_all(models, url, user)


if __name__ == "__main__" and sys.argv[1:2] == ["seed"]:
    seed(sys.argv[2])
