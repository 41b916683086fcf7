"""Bare extension instances, bound to an app in create_app() (no import cycles)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import current_app, g
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.exc import SQLAlchemyError

from .db import is_database_unavailable

login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(get_remote_address)


def outage_safe_key(key: Callable[[], str]) -> Callable[[], str]:
    """For rate-limit keys that read the database (the principal, an account).

    Flask-Limiter takes any error from a key function for its own storage failing: it
    switches every limit to in-memory counting and asks again, and the second try meets
    the half-failed transaction (a 500; found by `make load`). When the database is
    unavailable, this rolls back and counts the request in one bucket shared by every
    such request: failing closed, since a per-address key would let someone who can
    provoke errors spread an account's guesses over many addresses. The view then
    meets the outage itself (a 503). Any other error is a bug and still surfaces.
    """

    @functools.wraps(key)
    def key_or_outage_bucket() -> str:
        try:
            return key()
        except SQLAlchemyError as error:
            if not is_database_unavailable(error):
                raise
            current_app.logger.warning(
                "database unavailable in rate-limit key %s: %s", key.__name__, type(error).__name__
            )
            database = g.get("db")
            if database is not None:
                try:
                    database.rollback()
                except SQLAlchemyError:
                    pass  # the connection is gone; the pool replaces it
            return "database-unavailable"

    return key_or_outage_bucket
