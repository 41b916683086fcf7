"""The application log never holds a live token, and no client can forge a line in it.

A mailed link's path is the secret itself, so a 500 or a 503 on one of those routes
logs the route's rule (``/reset-password/<path:token>``), never the path. Control
characters in anything logged are escaped, so a newline cannot start a fake record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy.exc import OperationalError

from conftest import make_test_app
from support import sign_in

TOKEN = "Zq9" + "x" * 40  # the shape of a real mailed token (43 URL-safe characters)

TOKEN_ROUTES = [
    (f"/reset-password/{TOKEN}", "/reset-password/<path:token>"),
    (f"/invitations/{TOKEN}", "/invitations/<path:token>"),
    (f"/verify-email/{TOKEN}", "/verify-email/<path:token>"),
    (f"/account/email/confirm/{TOKEN}", "/account/email/confirm/<token>"),
]

FAILURES = {
    500: RuntimeError("a bug"),
    503: OperationalError("SELECT 1", {}, Exception("database is locked")),
}


@pytest.fixture()
def failing_app(database_file: Path) -> Iterator[Flask]:
    """The app as in production (errors become pages), failing in every request."""
    app = make_test_app(database_file, PROPAGATE_EXCEPTIONS=False)
    app.testing = False
    app.config["FAILURE"] = FAILURES[500]

    @app.before_request
    def fail() -> None:
        if app.config["FAILURE"] is not None:
            raise app.config["FAILURE"]

    yield app
    app.extensions["db_engine"].dispose()


@pytest.mark.parametrize("status", [500, 503])
@pytest.mark.parametrize(("path", "rule"), TOKEN_ROUTES, ids=[r for _, r in TOKEN_ROUTES])
def test_an_error_on_a_token_route_logs_the_rule_never_the_token(
    failing_app: Flask, caplog: pytest.LogCaptureFixture, path: str, rule: str, status: int
) -> None:
    failing_app.config["FAILURE"] = None
    client = failing_app.test_client()
    sign_in(client, "ada@acme.test")  # /invitations/<token> is for the signed-in
    failing_app.config["FAILURE"] = FAILURES[status]
    with caplog.at_level(logging.INFO):
        response = client.get(path)
    assert response.status_code == status
    assert TOKEN not in caplog.text
    assert TOKEN[:12] not in caplog.text  # not even a part of it
    assert f"GET {rule}" in caplog.text


def test_control_characters_in_a_logged_value_are_escaped(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "refused\n2026-12-07 INFO admin signed in\r\x1b[2J\x00"
    with caplog.at_level(logging.INFO):
        app.logger.info("passkey sign-in refused: %s", forged)
    [record] = [r for r in caplog.records if r.name == app.logger.name]
    message = record.getMessage()
    assert "\n" not in message and "\r" not in message
    assert "\x1b" not in message and "\x00" not in message
    assert message == (
        "passkey sign-in refused: refused\\n2026-12-07 INFO admin signed in\\r\\x1b[2J\\x00"
    )


def test_a_traceback_keeps_its_lines_but_no_other_control_characters(
    failing_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    failing_app.config["FAILURE"] = RuntimeError("bad input \x1b[31mred\x00")
    with caplog.at_level(logging.ERROR):
        assert failing_app.test_client().get("/").status_code == 500
    assert "Traceback (most recent call last):\n" in caplog.text
    assert "\x1b" not in caplog.text and "\x00" not in caplog.text
    assert "bad input \\x1b[31mred\\x00" in caplog.text
