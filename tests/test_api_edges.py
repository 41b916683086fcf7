"""Answers under /api/ that used to come from outside the API's own code: an untrusted
Host, a chunked body over the limit, a query string as long as the server allows, and the
CSRF Referer check over HTTPS. Each is now the documented JSON, with the usual headers."""

from __future__ import annotations

import http.client
from pathlib import Path
from urllib.parse import quote

from flask import Flask

from conftest import make_test_app
from invoiceapp.api.blueprint import MAX_QUERY_BYTES
from invoiceapp.api.openapi import openapi_document
from support import (
    NEW_INVOICE,
    api_csrf_token,
    bearer,
    csrf_token_from,
    live_server,
    make_token,
    sign_in,
)

# gunicorn's limit_request_line: a longer request line is its own 414, never the app's.
GUNICORN_REQUEST_LINE_LIMIT = 4094


def error_of(response: object) -> dict[str, str]:
    body = response.get_json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}, body
    return body["error"]


def test_an_untrusted_host_under_the_api_is_the_api_s_json_400(database_file: Path) -> None:
    app = make_test_app(database_file, BASE_URL="https://invoices.example.com")
    response = app.test_client().get("/api/v1/me", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert error_of(response)["code"] == "bad_request"
    assert error_of(response)["reason"] == "untrusted_host"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # Pages keep their plain line: no layout can be drawn without the host.
    page = app.test_client().get("/", headers={"Host": "evil.example"})
    assert page.status_code == 400 and page.mimetype == "text/plain"
    app.extensions["db_engine"].dispose()


def post_chunked(base: str, path: str, body: bytes, content_type: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=30)
    connection.putrequest("POST", path)
    connection.putheader("Content-Type", content_type)
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    connection.send(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_a_chunked_body_over_the_limit_gets_the_security_and_cache_headers(
    database_file: Path,
) -> None:
    app = make_test_app(database_file, MAX_CONTENT_LENGTH=1024)
    with live_server(app) as base:
        api = post_chunked(
            base, "/api/v1/invoices", b'{"x": "' + b"x" * 4000 + b'"}', "application/json"
        )
        page = post_chunked(
            base, "/invoices/new", b"customer=" + b"x" * 4000, "application/x-www-form-urlencoded"
        )
    assert api.status == 413 and api.getheader("Content-Type") == "application/json"
    assert api.getheader("Cache-Control") == "no-store"
    assert page.status == 413 and "text/html" in (page.getheader("Content-Type") or "")
    for response in (api, page):
        assert response.getheader("X-Content-Type-Options") == "nosniff"
        assert response.getheader("Content-Security-Policy")
    app.extensions["db_engine"].dispose()


def test_the_longest_schema_valid_query_fits_the_server_s_request_line(app: Flask) -> None:
    """The OpenAPI document bounds every query parameter so that a valid request is always
    answered by the app, never by gunicorn's 414."""
    with app.test_request_context():
        operation = openapi_document()["paths"]["/api/v1/invoices"]["get"]
    cursor = next(p for p in operation["parameters"] if p["name"] == "cursor")["schema"]
    assert cursor["pattern"] == "^[A-Za-z0-9_-]*$"  # one byte per character on the wire
    longest = (
        "?limit=100&status=draft&organization=" + "a" * 64 + "&cursor=" + "A" * cursor["maxLength"]
    )
    line = f"GET /api/v1/invoices{longest} HTTP/1.1"
    assert len(line) < GUNICORN_REQUEST_LINE_LIMIT
    assert len(longest) < MAX_QUERY_BYTES


def test_a_cursor_too_long_for_the_server_is_answered_by_the_app_as_json(app: Flask) -> None:
    """400 characters of "é" are 2,400 bytes on the wire: once past gunicorn's limit with a
    longer path, now a JSON 400 naming the query string."""
    raw = make_token(app, "ada@acme.test", "acme", "read")
    client = app.test_client()
    response = client.get("/api/v1/invoices?cursor=" + quote("é" * 400), headers=bearer(raw))
    assert response.status_code == 400
    assert error_of(response)["reason"] == "query_too_long"
    assert response.headers["Cache-Control"] == "no-store"
    ordinary = client.get("/api/v1/invoices?cursor=" + "A" * 400, headers=bearer(raw))
    assert ordinary.status_code == 422 and error_of(ordinary)["reason"] == "invalid_cursor"


def test_the_openapi_document_says_what_the_servers_in_front_may_answer(app: Flask) -> None:
    with app.test_request_context():
        document = openapi_document()
    description = document["info"]["description"]
    for status in ("414", "431", "501", "502", "504"):
        assert status in description, status
    assert "query_too_long" in str(document["paths"])


def test_a_cookie_api_write_over_https_without_a_referer_names_the_referer(
    database_file: Path,
) -> None:
    app = make_test_app(database_file)
    client = app.test_client()
    sign_in(client, "ada@acme.test")
    app.config["WTF_CSRF_ENABLED"] = True  # signed in; the writes below are the test
    token = client.get("/api/v1/me", base_url="https://localhost").get_json()["csrf_token"]
    headers = {"X-CSRFToken": token}
    missing = client.post(
        "/api/v1/invoices", json=NEW_INVOICE, headers=headers, base_url="https://localhost"
    )
    assert missing.status_code == 400
    assert error_of(missing)["reason"] == "csrf_referer"
    assert "Referer" in error_of(missing)["message"]
    assert "Send the CSRF token" not in error_of(missing)["message"]
    foreign = client.post(
        "/api/v1/invoices", json=NEW_INVOICE, base_url="https://localhost",
        headers={**headers, "Referer": "https://evil.example/"},
    )  # fmt: skip
    assert error_of(foreign)["reason"] == "csrf_referer"
    assert "another site" in error_of(foreign)["message"]
    same_site = client.post(
        "/api/v1/invoices", json=NEW_INVOICE, base_url="https://localhost",
        headers={**headers, "Referer": "https://localhost/invoices"},
    )  # fmt: skip
    assert same_site.status_code == 201
    app.extensions["db_engine"].dispose()


def test_a_cookie_api_write_without_the_token_is_still_told_to_send_it(csrf_app: Flask) -> None:
    client = csrf_app.test_client()
    sign_in(client, "ada@acme.test", csrf_token=csrf_token_from(client.get("/sign-in").text))
    api_csrf_token(client)  # handed out, and not sent:
    response = client.post("/api/v1/invoices", json=NEW_INVOICE)
    assert response.status_code == 400
    assert error_of(response)["reason"] == "csrf"
    assert "X-CSRFToken" in error_of(response)["message"]
