"""What an operator relies on: health checks, trusted hosts, body limits, headers, and
configuration mistakes reported in one clear line."""

from __future__ import annotations

import gc
import http.client
import os
import runpy
import socket
import subprocess
import sys
import time
from pathlib import Path

import gunicorn.config
import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conftest import make_test_app
from invoiceapp import create_app
from invoiceapp.models import Invoice
from invoiceapp.money import AmountError, parse_amount
from support import VALID_INVOICE_FORM, free_port, live_server, signed_in_client

ROOT = Path(__file__).resolve().parent.parent


def test_healthz_and_readyz_answer_json_without_a_session(app: Flask) -> None:
    client = app.test_client()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {
        "status": "ok",
        "checks": {"database": True},
        "request": {"scheme": "http", "csrf_referer_check": False},  # plain HTTP, CSRF off
    }
    assert "gunicorn" not in str(ready.headers).lower()


def test_readyz_is_503_when_the_database_is_unreachable() -> None:
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "x",
            "PASSWORD_HASH_PROFILE": "CHEAPEST",
            "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/nothing",
        }
    )
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert (body["status"], body["checks"]) == ("unavailable", {"database": False})
    assert response.headers["Retry-After"]
    assert app.test_client().get("/healthz").status_code == 200  # the process itself is up


def test_readyz_is_503_when_redis_for_the_rate_limits_is_unreachable(
    database_file: Path,
) -> None:
    """Limits kept in Redis are part of being ready: the database alone is not enough."""
    nobody_listens = f"redis://127.0.0.1:{free_port()}"
    app = make_test_app(database_file, RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=nobody_listens)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert (body["status"], body["checks"]) == ("unavailable", {"database": True, "redis": False})
    assert response.headers["Retry-After"] == str(app.config["DATABASE_RETRY_AFTER_SECONDS"])
    assert app.test_client().get("/healthz").status_code == 200
    app.extensions["db_engine"].dispose()


def test_a_foreign_host_header_is_a_400_before_any_redirect(database_file: Path) -> None:
    app = make_test_app(database_file, BASE_URL="https://invoices.example")
    client = app.test_client()
    response = client.get("/invoices//inv_7", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert "evil.example" not in response.headers.get("Location", "")
    assert client.get("/healthz", headers={"Host": "invoices.example"}).status_code == 200
    app.extensions["db_engine"].dispose()


def test_trusted_hosts_default_to_base_url_outside_development() -> None:
    app = create_app(
        {"SECRET_KEY": "k" * 32, "BASE_URL": "https://invoices.example", "MAIL_BACKEND": "smtp"}
    )
    assert app.config["TRUSTED_HOSTS"] == ["invoices.example"]


def _post_chunked(base: str, path: str, body: bytes, cookie: str) -> int:
    host = base.removeprefix("http://")
    connection = http.client.HTTPConnection(host, timeout=30)
    connection.putrequest("POST", path)
    connection.putheader("Content-Type", "application/x-www-form-urlencoded")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.putheader("Cookie", cookie)
    connection.endheaders()
    for start in range(0, len(body), 8192):
        chunk = body[start : start + 8192]
        connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    connection.send(b"0\r\n\r\n")
    status = connection.getresponse().status
    connection.close()
    return status


def test_a_chunked_body_over_the_limit_is_a_413_and_nothing_is_created(
    database_file: Path, db: Session
) -> None:
    app = make_test_app(database_file, MAX_CONTENT_LENGTH=4096)
    client = signed_in_client(app, "ada@acme.test")
    cookie = f"invoiceapp_sid={client.get_cookie('invoiceapp_sid').value}"  # type: ignore[union-attr]
    before = db.scalar(select(func.count()).select_from(Invoice))
    form = "&".join(f"{key}={value}" for key, value in VALID_INVOICE_FORM.items())
    with live_server(app) as base:
        oversized = (form + "&padding=" + "x" * 10_000).encode()
        assert _post_chunked(base, "/invoices/new", oversized, cookie) == 413
        # The same form, small enough, still works when chunked.
        assert _post_chunked(base, "/invoices/new", form.encode(), cookie) == 303
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Invoice)) == before + 1
    app.extensions["db_engine"].dispose()


def test_pages_send_opener_and_permissions_policies(app: Flask) -> None:
    headers = app.test_client().get("/").headers
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in headers["Permissions-Policy"]


@pytest.mark.parametrize("text", ["١٢٣", "１２３", "12\u0663", "𝟏𝟐"])
def test_amounts_take_ascii_digits_only(text: str) -> None:
    with pytest.raises(AmountError, match="digits 0 to 9"):
        parse_amount(text)


def test_flask_command_without_a_secret_key_fails_in_one_line() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "flask"), "--app", "invoiceapp", "policy"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("Error: SECRET_KEY is not set")


def test_flask_policy_command_runs_as_documented_with_a_key() -> None:
    environment = {**os.environ, "FLASK_SECRET_KEY": "k" * 32}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "flask"), "--app", "invoiceapp", "policy"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "invoice.delete" in result.stdout


@pytest.mark.parametrize(
    ("asked", "flags"),
    [({"WEB_CONCURRENCY": "2"}, []), ({}, ["-w", "3"]), ({"GUNICORN_CMD_ARGS": "-w 2"}, [])],
    ids=["WEB_CONCURRENCY", "-w", "GUNICORN_CMD_ARGS"],
)
def test_gunicorn_refuses_several_workers_with_in_memory_rate_limits(
    tmp_path: Path, asked: dict[str, str], flags: list[str]
) -> None:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
        "FLASK_SECRET_KEY": "k" * 32,
        "FLASK_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "FLASK_MAIL_FILE_BACKEND_ALLOWED": "true",  # this test is about rate limits, not mail
        "BIND": "127.0.0.1:0",
        **asked,
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "gunicorn"), "--no-control-socket", *flags,
         "-c", "gunicorn.conf.py", "invoiceapp:create_app()"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "FLASK_RATELIMIT_STORAGE_URI" in result.stderr + result.stdout


def test_the_contract_s_plain_gunicorn_command_serves_with_one_worker(tmp_path: Path) -> None:
    """CONTRACT §1: `.venv/bin/gunicorn "invoiceapp:create_app()"`, nothing else. gunicorn
    reads gunicorn.conf.py from the working directory; without shared rate-limit storage
    that means one worker, never a refusal."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
        "FLASK_SECRET_KEY": "k" * 32,
        "FLASK_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "BIND": f"127.0.0.1:{port}",  # the default mail backend (file), as CONTRACT §2 has it
    }
    environment.pop("WEB_CONCURRENCY", None)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "invoiceapp:create_app()"],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/healthz", headers={"Host": "127.0.0.1"})
                assert connection.getresponse().status == 200
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "gunicorn did not come up"
                time.sleep(0.2)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert output.count("Booting worker") == 1, output


def test_a_chunked_api_body_over_the_limit_is_a_json_413(database_file: Path) -> None:
    app = make_test_app(database_file, MAX_CONTENT_LENGTH=1024)
    with live_server(app) as base:
        host = base.removeprefix("http://")
        connection = http.client.HTTPConnection(host, timeout=30)
        connection.putrequest("POST", "/api/v1/invoices")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        body = b'{"customer": "' + b"x" * 4000 + b'"}'
        connection.send(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        response = connection.getresponse()
        assert response.status == 413
        assert response.getheader("Content-Type") == "application/json"
        assert b'"too_large"' in response.read()
        connection.close()
    app.extensions["db_engine"].dispose()


def test_each_gunicorn_worker_moves_what_it_built_out_of_the_collector_s_sight() -> None:
    """gunicorn.conf.py's post_worker_init (a hook gunicorn knows) freezes everything the
    worker built before its first request: full collections then walk only what requests
    made, not the ~140,000 objects of the app and its libraries."""
    assert "post_worker_init" in gunicorn.config.Config().settings
    hooks = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert gc.get_freeze_count() == 0
    try:
        hooks["post_worker_init"](None)
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
