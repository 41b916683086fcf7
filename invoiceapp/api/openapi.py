"""The OpenAPI 3.1 document, written from the registered operations and their models.

Nothing here is typed by hand twice: paths, parameters, bodies and responses come from
invoiceapp.api.registry and the pydantic models in invoiceapp.api.schemas, the same
ones that validate requests. /api/v1/docs is a static page that reads this document.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Response, current_app, jsonify, send_from_directory
from pydantic import BaseModel

from ..errors import API_CODES
from .blueprint import bp
from .registry import OPERATIONS, Operation
from .schemas import PUBLIC_ID_PATTERN, SLUG_PATTERN, ErrorBody

REF = "#/components/schemas/{model}"

PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "invoice_id": {
        "description": "The invoice's public id.",
        "schema": {"type": "string", "pattern": PUBLIC_ID_PATTERN, "examples": ["inv_7"]},
    },
    "slug": {
        "description": "The organization's slug.",
        "schema": {"type": "string", "pattern": SLUG_PATTERN, "examples": ["acme"]},
    },
}

# What each status means in this API; every operation lists the ones it can answer.
ERROR_DETAILS = {
    400: "malformed JSON (reason malformed_json), a malformed Idempotency-Key, a query "
    "string over 2,048 bytes (reason query_too_long), a Host this server does not answer "
    "for (reason untrusted_host), or for cookie requests no CSRF token in X-CSRFToken "
    "(reason csrf) or, over HTTPS, no Referer from this site (reason csrf_referer).",
    401: "no valid session or token (WWW-Authenticate: Bearer, with "
    'error="invalid_token" for a refused token), or reason reauthentication_required.',
    403: "the policy said no; the message names the action and what was missing. "
    "reason insufficient_scope (a read token), or the organization's security policy: "
    "two_factor_required, passkey_required, stronger_sign_in_required, session_too_old, "
    "tokens_not_allowed, token_lifetime_too_long.",
    404: "missing, or not in an organization this request reaches (the same body).",
    405: "",  # the code says it all
    409: "without If-Match (or with *), the invoice changed between this "
    "request's read and its write; or, creating, someone else already used the "
    "Idempotency-Key. Nothing was changed.",
    412: "If-Match names a version that is no longer current.",
    413: "the body exceeds MAX_CONTENT_LENGTH.",
    415: "the body is not application/json.",
    422: "fields lists the messages for each field (a cursor we did not make: "
    "reason invalid_cursor); nothing was changed.",
    429: "wait Retry-After seconds.",
    500: "a bug on our side; nothing is revealed.",
    503: "the database is busy or unreachable; retry after Retry-After.",
}


# What the servers in front may answer before the app sees the request: not this API's
# JSON, so clients should go by the status code when the body is not JSON.
ANSWERED_BEFORE_THE_APP = (
    "Some answers come from the servers in front of the app, before it sees the request, "
    "and are not this JSON: the HTTP server (gunicorn) answers 400 for a malformed request, "
    "414 for a request line over 4,094 bytes (the app refuses query strings over 2,048 "
    "bytes itself, as JSON), 431 for a header over 8,190 bytes or too many headers, and "
    "501 for an unsupported method or transfer encoding; a reverse proxy may answer 413 "
    "(a body over its own limit), 502 or 504 (the app is down or too slow), or 400 and "
    "414 of its own (the repository's deploy/nginx.conf answers its 413, and 503 for the "
    "other two, in this JSON shape). Treat a non-JSON error by its status code."
)


def error_description(status: int) -> str:
    """ "conflict: …": the code from the one table (invoiceapp.errors), then what it means here."""
    detail = ERROR_DETAILS[status]
    return f"{API_CODES[status]}: {detail}" if detail else f"{API_CODES[status]}."


# Answers any operation can give.
# 400: any request may name an unknown Host or carry an over-long query string.
SHARED_ERRORS = (400, 405, 429, 500, 503)
HEADERS = {
    "ETag": {"description": 'The version, as "3": send it back in If-Match.'},
    "Location": {"description": "Where the new resource is."},
    "WWW-Authenticate": {"description": 'Bearer realm="InvoiceApp" (RFC 6750).'},
    "Retry-After": {"description": "Seconds to wait."},
}
ERROR_HEADERS = {401: "WWW-Authenticate", 429: "Retry-After", 503: "Retry-After"}


def openapi_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS.values():
        path = "/api/v1" + operation.openapi_path
        paths.setdefault(path, {})[operation.method.lower()] = _operation(operation, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "InvoiceApp API",
            "version": "1",
            "description": (
                "The same three steps as the pages: authentication (401), scope (404: another "
                "organization's invoice looks exactly like a missing one), authorization (403). "
                "Authenticate with a personal access token (Authorization: Bearer ia_pat_…, "
                "made at /account/tokens), or with the session cookie plus the CSRF token in "
                "X-CSRFToken for unsafe methods (GET /api/v1/me gives it). Errors are always "
                '{"error": {"code", "message", "reason"?, "fields"?}}. PATCH and DELETE take '
                "If-Match with the ETag from GET (412 when stale); without it they apply to "
                "the version they read, and a write landing in between is a 409. "
                + ANSWERED_BEFORE_THE_APP
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "ia_pat_…",
                    "description": "A personal access token from /account/tokens. No CSRF "
                    "token needed. Its scope (read or write) narrows its user's role.",
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": current_app.config["AUTH_COOKIE_NAME"],
                    "description": "The browser's session, as on the pages.",
                },
                "csrfHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-CSRFToken",
                    "description": "With the session cookie, on POST, PATCH and DELETE: the "
                    "csrf_token from GET /api/v1/me.",
                },
            },
        },
    }


def _operation(operation: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "operationId": operation.endpoint,
        "summary": operation.summary,
        "parameters": _parameters(operation),
        "responses": _responses(operation, schemas),
    }
    if operation.description:
        document["description"] = operation.description
    if not operation.requires_principal:
        document["security"] = []
    elif operation.unsafe:
        document["security"] = [{"bearerToken": []}, {"sessionCookie": [], "csrfHeader": []}]
    else:
        document["security"] = [{"bearerToken": []}, {"sessionCookie": []}]
    if operation.body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": _ref(operation.body, schemas, "validation")}
            },
        }
    return document


def _parameters(operation: Operation) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = []
    for name in _path_names(operation):
        parameters.append({"name": name, "in": "path", "required": True, **PATH_PARAMETERS[name]})
    if operation.query is not None:
        schema = operation.query.model_json_schema(mode="validation")
        required = set(schema.get("required", ()))
        for name, prop in schema["properties"].items():
            parameter = {"name": name, "in": "query", "required": name in required}
            if "description" in prop:
                parameter["description"] = prop.pop("description")
            prop.pop("title", None)
            parameter["schema"] = _without_null(prop)
            parameters.append(parameter)
    if operation.idempotency_key:
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "A key you choose, 16 to 64 letters, digits, - or _. Sending "
                "the same key again (a retry) answers the invoice the first request made, "
                "with Idempotent-Replayed: true, and makes no second one. 409 if another "
                "person already used the key.",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,64}$"},
            }
        )
    if operation.if_match:
        parameters.append(
            {
                "name": "If-Match",
                "in": "header",
                "required": False,
                "description": 'The ETag you read, e.g. "3": 412 if the invoice changed '
                "since. Without it (or with *), the version this request reads.",
                "schema": {"type": "string", "examples": ['"1"']},
            }
        )
    return parameters


def _path_names(operation: Operation) -> list[str]:
    return re.findall(r"\{([^}]+)\}", operation.openapi_path)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a string; JSON null does not exist in a URL."""
    options = schema.pop("anyOf", None)
    if options is not None:
        kept = [option for option in options if option.get("type") != "null"]
        schema = {**(kept[0] if len(kept) == 1 else {"anyOf": kept}), **schema}
    if schema.get("default") is None:
        schema.pop("default", None)
    return schema


def _responses(operation: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    success: dict[str, Any] = {"description": operation.summary}
    if operation.response is not None:
        success["content"] = {
            "application/json": {"schema": _ref(operation.response, schemas, "serialization")}
        }
    if operation.headers:
        success["headers"] = {
            name: {**HEADERS[name], "required": True, "schema": {"type": "string"}}
            for name in operation.headers
        }
    responses: dict[str, Any] = {str(operation.status): success}
    error = _ref(ErrorBody, schemas, "serialization")
    for status in sorted(set(_error_statuses(operation))):
        response: dict[str, Any] = {
            "description": error_description(status),
            "content": {"application/json": {"schema": error}},
        }
        if status in ERROR_HEADERS:
            name = ERROR_HEADERS[status]
            response["headers"] = {name: {**HEADERS[name], "schema": {"type": "string"}}}
        responses[str(status)] = response
    return responses


def _error_statuses(operation: Operation) -> list[int]:
    statuses = [*operation.errors, *SHARED_ERRORS]
    if operation.requires_principal:
        statuses.append(401)
        if operation.unsafe:
            statuses.append(400)  # CSRF, for cookie requests
    if operation.query is not None:
        statuses.append(422)  # a bad parameter or cursor
    if operation.body is not None:
        statuses += [400, 413, 415, 422]
    return statuses


def _ref(model: type[BaseModel], schemas: dict[str, Any], mode: str) -> dict[str, str]:
    schema = model.model_json_schema(ref_template=REF, mode=mode)  # type: ignore[arg-type]
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


# --- The two public routes -----------------------------------------------------------


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The document; public, like any API's reference."""
    return jsonify(openapi_document())


@bp.get("/docs")
def docs() -> Response:
    """A static page (static/api-docs.html) whose script lists the operations."""
    return send_from_directory(current_app.static_folder or "static", "api-docs.html")
