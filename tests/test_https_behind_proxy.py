"""Behind a TLS-terminating proxy: which requests get the CSRF Referer check (issue 15, item 9).

Over HTTPS, Flask-WTF wants a same-site Referer on every form post as well as the token.
Behind a proxy the app learns "HTTPS" only from X-Forwarded-Proto, which it believes only
with TRUSTED_PROXY_HOPS set. With the default 0 the check is skipped; the deployment says
so at start-up, and /readyz shows how each request looks.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from flask import Flask

from conftest import make_test_app
from invoiceapp import create_app
from support import PASSWORD, csrf_token_from

# What a TLS-terminating proxy adds to a request it passes on.
FROM_THE_PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}


def sign_in_through_the_proxy(app: Flask, **headers: str) -> int:
    client = app.test_client()
    token = csrf_token_from(client.get("/sign-in").get_data(as_text=True))
    data = {"email": "ada@acme.test", "password": PASSWORD, "csrf_token": token}
    return client.post("/sign-in", data=data, headers={**FROM_THE_PROXY, **headers}).status_code


def test_with_no_trusted_hops_a_proxied_https_post_skips_the_referer_check(
    database_file: Path,
) -> None:
    app = make_test_app(database_file, WTF_CSRF_ENABLED=True, TRUSTED_PROXY_HOPS=0)

    assert sign_in_through_the_proxy(app) == 303  # no Referer, and still accepted

    seen = app.test_client().get("/readyz", headers=FROM_THE_PROXY).get_json()["request"]
    assert seen == {"scheme": "http", "csrf_referer_check": False}


def test_with_one_trusted_hop_a_proxied_https_post_needs_a_same_site_referer(
    database_file: Path,
) -> None:
    app = make_test_app(database_file, WTF_CSRF_ENABLED=True, TRUSTED_PROXY_HOPS=1)

    assert sign_in_through_the_proxy(app) == 400
    assert sign_in_through_the_proxy(app, Referer="https://evil.example/sign-in") == 400
    assert sign_in_through_the_proxy(app, Referer="https://localhost/sign-in") == 303

    seen = app.test_client().get("/readyz", headers=FROM_THE_PROXY).get_json()["request"]
    assert seen == {"scheme": "https", "csrf_referer_check": True}


def test_a_post_without_a_referer_over_https_is_told_why(database_file: Path) -> None:
    app = make_test_app(database_file, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    token = csrf_token_from(client.get("/sign-in", base_url="https://localhost").text)
    data = {"email": "ada@acme.test", "password": PASSWORD, "csrf_token": token}

    response = client.post("/sign-in", data=data, base_url="https://localhost")

    assert response.status_code == 400
    assert "without saying which page it came from" in response.text


def deployment(database_file: Path, **settings: object) -> Flask:
    """The app as gunicorn starts it: no testing, debug or demo mode, so cookies are Secure."""
    return create_app(
        {
            "SECRET_KEY": "k" * 40,
            "DATABASE_URL": f"sqlite:///{database_file}",
            "MAIL_BACKEND": "smtp",
            **settings,
        }
    )


def test_a_deployment_with_no_trusted_hops_warns_at_start_up_that_the_check_is_skipped(
    database_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="invoiceapp"):
        deployment(database_file)
    (line,) = [r for r in caplog.records if "TRUSTED_PROXY_HOPS" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert "Referer check is skipped" in line.getMessage()
    assert "FLASK_TRUSTED_PROXY_HOPS" in line.getMessage()


def test_a_deployment_with_trusted_hops_says_the_check_applies(
    database_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="invoiceapp"):
        deployment(database_file, TRUSTED_PROXY_HOPS=1)
    (line,) = [r for r in caplog.records if "TRUSTED_PROXY_HOPS" in r.getMessage()]
    assert line.levelno == logging.INFO
    assert "TRUSTED_PROXY_HOPS=1" in line.getMessage()
    assert "get the CSRF Referer check" in line.getMessage()
