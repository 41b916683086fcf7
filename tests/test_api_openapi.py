"""The OpenAPI document is written from the code, so it cannot leave a route out, and
/api/v1/docs renders it from static files under the same strict CSP as every page."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from invoiceapp.api.registry import OPERATIONS
from invoiceapp.api.schemas import InvoiceChanges, NewInvoice

REF = "#/components/schemas/{model}"
CONTRACT_ERRORS = {  # CONTRACT section 6: a closed list
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation",
    429: "rate_limited",
    500: "internal",
}


def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in doc["paths"].items()
        for method, operation in methods.items()
    ]


def test_every_api_route_is_documented_and_nothing_else(app: Flask, client: FlaskClient) -> None:
    doc = document(client)
    assert doc["openapi"] == "3.1.0"
    documented = {(method, path) for method, path, _ in operations(doc)}
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and rule.endpoint not in (
            "api.openapi_json",
            "api.docs",
        ):
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
            routed |= {(m, path) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    assert documented == routed
    assert len(documented) == len(OPERATIONS) == 11
    ids = [operation["operationId"] for _, _, operation in operations(doc)]
    assert len(ids) == len(set(ids))


def test_request_bodies_are_the_models_that_validate_them(client: FlaskClient) -> None:
    schemas = document(client)["components"]["schemas"]
    for model in (NewInvoice, InvoiceChanges):
        expected = model.model_json_schema(ref_template=REF, mode="validation")
        expected.pop("$defs", None)
        assert schemas[model.__name__] == expected
        assert schemas[model.__name__]["additionalProperties"] is False
        for forbidden in ("status", "organization", "organization_id", "created_by", "number"):
            assert forbidden not in schemas[model.__name__]["properties"]
    assert schemas["NewInvoice"]["required"] == [
        "customer",
        "amount",
        "currency",
        "issue_date",
        "due_date",
    ]
    assert "required" not in schemas["InvoiceChanges"]
    for field in schemas["InvoiceChanges"]["properties"].values():
        assert "default" not in field  # optional, but never null


def test_every_error_response_is_documented_with_the_error_shape(client: FlaskClient) -> None:
    doc = document(client)
    error_ref = {"$ref": REF.format(model="ErrorBody")}
    assert set(doc["components"]["schemas"]["ErrorDetail"]["properties"]) == {
        "code",
        "message",
        "reason",
        "fields",
    }
    for method, path, operation in operations(doc):
        responses = operation["responses"]
        for status, response in responses.items():
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == error_ref
                assert response["description"]
        required = {"401", "405", "429", "500", "503"}
        if method != "GET":
            required |= {"400"}  # CSRF for cookie requests
        if "requestBody" in operation:
            required |= {"400", "413", "415", "422"}
        if "{" in path:
            required |= {"404"}
        assert required <= set(responses), (method, path, required - set(responses))
        assert "WWW-Authenticate" in responses["401"]["headers"]
        assert "Retry-After" in responses["429"]["headers"]


def test_writes_to_an_invoice_take_an_optional_if_match(client: FlaskClient) -> None:
    doc = document(client)
    item = doc["paths"]["/api/v1/invoices/{invoice_id}"]
    for method in ("patch", "delete"):
        (if_match,) = [p for p in item[method]["parameters"] if p["name"] == "If-Match"]
        assert if_match["in"] == "header" and if_match["required"] is False
        assert {"409", "412"} <= set(item[method]["responses"])
    assert item["get"]["responses"]["200"]["headers"]["ETag"]["required"] is True
    assert doc["paths"]["/api/v1/invoices"]["post"]["responses"]["201"]["headers"].keys() == {
        "ETag",
        "Location",
    }


def test_every_documented_error_is_in_the_contract_s_closed_list(client: FlaskClient) -> None:
    doc = document(client)
    statuses = {int(status) for _, _, op in operations(doc) for status in op["responses"]}
    codes = set(doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"])
    # 503 unavailable is the one answer beyond CONTRACT section 6 (README says so).
    assert {s for s in statuses if s >= 400} <= set(CONTRACT_ERRORS) | {503}
    assert codes <= set(CONTRACT_ERRORS.values()) | {"unavailable"}
    assert "precondition_required" not in codes


def test_security_schemes_cookie_with_csrf_or_bearer(app: Flask, client: FlaskClient) -> None:
    doc = document(client)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerToken"] == {**schemes["bearerToken"], "type": "http", "scheme": "bearer"}
    assert schemes["sessionCookie"]["in"] == "cookie"
    assert schemes["sessionCookie"]["name"] == app.config["AUTH_COOKIE_NAME"]
    assert schemes["csrfHeader"] == {**schemes["csrfHeader"], "in": "header", "name": "X-CSRFToken"}
    for method, _, operation in operations(doc):
        cookie = (
            {"sessionCookie": [], "csrfHeader": []} if method != "GET" else {"sessionCookie": []}
        )
        assert operation["security"] == [{"bearerToken": []}, cookie]


def test_query_parameters_come_from_the_query_models(client: FlaskClient) -> None:
    doc = document(client)
    listing = {p["name"]: p for p in doc["paths"]["/api/v1/invoices"]["get"]["parameters"]}
    assert set(listing) == {"organization", "limit", "cursor", "status"}
    assert listing["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 25,
    }
    assert listing["status"]["schema"]["enum"] == ["draft", "sent", "paid", "void"]
    assert all(not p["required"] for p in listing.values())


def test_the_reference_page_is_static_and_has_no_inline_code(client: FlaskClient) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert '<script src="/static/api-docs.js" defer></script>' in html
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []  # every script has a src
    assert "style=" not in html and "<style" not in html
    assert "http://" not in html.replace("http://127.0.0.1:5000", "")  # no CDN
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    script = client.get("/static/api-docs.js")
    assert script.status_code == 200
    assert "/api/v1/openapi.json" in script.get_data(as_text=True)
    assert "innerHTML" not in script.get_data(as_text=True)
    assert client.get("/static/api-docs.css").status_code == 200
