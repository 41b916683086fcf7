"""deploy/nginx.conf, run as written in front of gunicorn: TLS, the forwarded headers with
TRUSTED_PROXY_HOPS=1, and slow clients that no longer reach a gunicorn worker.

The app runs as a deployment runs it (no debug, demo or testing mode: Secure cookies,
HSTS, the production password hash). The certificate is made here for localhost. The
repository's file is used as it is; only its site-specific values (host name, ports,
certificate paths) are swapped for this test's (bench/slow_clients.py, which also measures
how long /healthz waits with 40 trickling clients, with and without nginx).
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from bench.slow_clients import NGINX, Tricklers, nginx_configuration
from conftest import TEST_CONFIG
from invoiceapp import create_app
from invoiceapp.db import make_engine
from invoiceapp.models import User, UserSession
from support import (
    PASSWORD,
    bearer,
    csrf_token_from,
    free_port,
    make_token,
    self_signed_certificate,
    wait_until_up,
)

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(NGINX is None, reason="needs nginx (.ci/run installs it)")


@dataclass
class Proxied:
    https: str  # through nginx, over TLS
    http: str  # nginx's plain-HTTP port
    certificate: Path
    key: Path
    database_url: str


@pytest.fixture(scope="module")
def proxied(seeded_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    folder = tmp_path_factory.mktemp("proxy")
    database = folder / "app.sqlite3"
    shutil.copyfile(seeded_database, database)
    cert, key = self_signed_certificate(folder)
    https_port, http_port, upstream = free_port(), free_port(), free_port()
    base = f"https://localhost:{https_port}"
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
        "FLASK_SECRET_KEY": "proxy-test-key-" + "k" * 32,
        "FLASK_DATABASE_URL": f"sqlite:///{database}",
        "FLASK_BASE_URL": base,
        "FLASK_TRUSTED_PROXY_HOPS": "1",
        "FLASK_MAIL_OUTBOX_DIR": str(folder / "outbox"),
        "FLASK_MAIL_FILE_BACKEND_ALLOWED": "true",
        "WEB_CONCURRENCY": "1",  # one sync worker: the easiest to starve without nginx
        "BIND": f"127.0.0.1:{upstream}",
    }
    app_server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "--no-control-socket",
         "-c", "gunicorn.conf.py", "invoiceapp:create_app()"],
        cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    configuration = nginx_configuration(
        folder, https_port=https_port, http_port=http_port, upstream=upstream, cert=cert, key=key
    )
    assert NGINX is not None
    proxy = subprocess.Popen(
        [NGINX, "-c", str(configuration), "-p", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    trusting = ssl.create_default_context(cafile=str(cert))
    try:
        wait_until_up(base + "/healthz", app_server, context=trusting)
        yield Proxied(base, f"http://localhost:{http_port}", cert, key, f"sqlite:///{database}")
    finally:
        proxy.terminate()
        app_server.terminate()
        proxy.wait(timeout=20)
        app_server.wait(timeout=20)


def test_through_nginx_the_app_is_served_over_tls_and_knows_it(proxied: Proxied) -> None:
    ready = requests.get(proxied.https + "/readyz", verify=proxied.certificate, timeout=10)
    assert ready.status_code == 200
    # TRUSTED_PROXY_HOPS=1 believes nginx's X-Forwarded-Proto: HTTPS, so the Referer check runs.
    assert ready.json()["request"] == {"scheme": "https", "csrf_referer_check": True}
    assert ready.headers["Strict-Transport-Security"].startswith("max-age=")
    plain = requests.get(proxied.http + "/invoices?page=2", allow_redirects=False, timeout=10)
    assert plain.status_code == 301
    assert plain.headers["Location"] == proxied.https + "/invoices?page=2"


def test_through_nginx_the_app_records_the_client_not_the_address_it_claims(
    proxied: Proxied,
) -> None:
    browser = requests.Session()
    page = browser.get(proxied.https + "/sign-in", verify=proxied.certificate, timeout=10)
    assert page.status_code == 200
    signed_in = browser.post(
        proxied.https + "/sign-in",
        data={"email": "linus@acme.test", "password": PASSWORD,
              "csrf_token": csrf_token_from(page.text)},
        headers={"Referer": proxied.https + "/sign-in", "X-Forwarded-For": "203.0.113.9"},
        allow_redirects=False, timeout=30, verify=proxied.certificate,
    )  # fmt: skip
    assert signed_in.status_code == 303
    assert any(cookie.name.startswith("__Host-") and cookie.secure for cookie in browser.cookies)
    engine = make_engine(proxied.database_url)
    try:
        with engine.connect() as connection:
            linus = connection.scalar(select(User.id).where(User.email == "linus@acme.test"))
            addresses = connection.scalars(
                select(UserSession.ip_address).where(UserSession.user_id == linus)
            ).all()
    finally:
        engine.dispose()
    assert addresses and set(addresses) == {"127.0.0.1"}


def test_a_form_posted_through_nginx_without_a_referer_is_refused(proxied: Proxied) -> None:
    """The CSRF Referer check really runs behind the proxy (it is skipped with 0 hops)."""
    browser = requests.Session()
    page = browser.get(proxied.https + "/sign-in", verify=proxied.certificate, timeout=10)
    refused = browser.post(
        proxied.https + "/sign-in",
        data={"email": "linus@acme.test", "password": PASSWORD,
              "csrf_token": csrf_token_from(page.text)},
        allow_redirects=False, timeout=30, verify=proxied.certificate,
    )  # fmt: skip
    assert refused.status_code == 400
    assert "Referer" in refused.text


def test_forty_trickling_clients_do_not_starve_healthz_behind_nginx(proxied: Proxied) -> None:
    """One sync gunicorn worker, 40 clients trickling their headers: nginx holds them, so
    every health check still gets through (each with a short timeout)."""
    port = int(re.sub(r".*:", "", proxied.https))
    context = ssl.create_default_context(cafile=str(proxied.certificate))
    tricklers = Tricklers(port, 40, context)
    try:
        for _ in range(10):
            health = requests.get(proxied.https + "/healthz", verify=proxied.certificate, timeout=3)
            assert health.status_code == 200
    finally:
        tricklers.close()


def test_an_api_body_over_nginx_s_limit_is_the_api_s_json_413(proxied: Proxied) -> None:
    response = requests.post(
        proxied.https + "/api/v1/invoices",
        data=b'{"customer": "' + b"x" * 300_000 + b'"}',
        headers={"Content-Type": "application/json"},
        verify=proxied.certificate, timeout=10,
    )  # fmt: skip
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {"code": "too_large", "message": "The request body is too large."}
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_with_the_app_down_nginx_answers_the_api_with_json_503(
    proxied: Proxied, tmp_path: Path
) -> None:
    """nginx in front of a port where nothing listens: the API still gets its JSON shape."""
    assert NGINX is not None
    https_port = free_port()
    configuration = nginx_configuration(
        tmp_path, https_port=https_port, http_port=free_port(), upstream=free_port(),
        cert=proxied.certificate, key=proxied.key,
    )  # fmt: skip
    proxy = subprocess.Popen(
        [NGINX, "-c", str(configuration), "-p", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"https://localhost:{https_port}"
    try:
        api = _first_answer(base + "/api/v1/me", proxied.certificate)
        assert api.status_code == 503
        assert api.json()["error"]["code"] == "unavailable"
        assert api.headers["Retry-After"] == "5"
        page = requests.get(base + "/", verify=proxied.certificate, timeout=10)
        assert page.status_code == 502  # pages get nginx's own page
    finally:
        proxy.terminate()
        proxy.wait(timeout=20)


def _first_answer(url: str, certificate: Path) -> requests.Response:
    """The first answer once nginx listens (it starts in a few milliseconds)."""
    for _ in range(100):
        try:
            return requests.get(url, verify=certificate, timeout=10)
        except requests.ConnectionError:
            time.sleep(0.05)
    raise AssertionError(f"{url} never answered")


def test_a_long_api_query_is_answered_by_the_app_as_json_not_by_gunicorn(
    proxied: Proxied,
) -> None:
    """3,000 bytes of query: under gunicorn's 4,094-byte request line, over the API's own
    2,048-byte bound, so the answer is the API's JSON 400 rather than a plain-text 414."""
    app = create_app({**TEST_CONFIG, "DATABASE_URL": proxied.database_url})
    raw = make_token(app, "ada@acme.test", "acme", "read")
    app.extensions["db_engine"].dispose()
    response = requests.get(
        proxied.https + "/api/v1/invoices?cursor=" + "%C3%A9" * 500,
        headers=bearer(raw), verify=proxied.certificate, timeout=10,
    )  # fmt: skip
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["reason"] == "query_too_long"
