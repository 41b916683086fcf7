"""Every API route is declared once, with what it reads and what it answers.

    @api_operation("PATCH", "/invoices/<invoice_id>", body=InvoiceChanges,
                   response=InvoiceOut, errors=(403, 404, 409, 412))
    @login_required
    def update_invoice(invoice_id: str) -> Response: ...

The decorator adds the Flask route and keeps the declaration, from which
invoiceapp.api.openapi writes the document. read_body() and read_query() validate with
the models declared here (and refuse any other), so what the document promises is what
the handler checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Blueprint, Response, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import BadRequest, UnprocessableEntity, UnsupportedMediaType

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # Flask syntax, under the blueprint's /api/v1
    endpoint: str
    summary: str
    description: str
    query: type[BaseModel] | None
    body: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    # Failures specific to this operation; the ones every operation shares are added
    # by invoiceapp.api.openapi (401, 429, 500, …).
    errors: tuple[int, ...]
    requires_principal: bool
    if_match: bool
    headers: tuple[str, ...] = field(default=())  # response headers on success
    idempotency_key: bool = False  # takes an Idempotency-Key request header

    @property
    def openapi_path(self) -> str:
        return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", self.path)

    @property
    def unsafe(self) -> bool:
        return self.method in UNSAFE_METHODS


OPERATIONS: dict[str, Operation] = {}


def api_operation(
    bp: Blueprint,
    method: str,
    path: str,
    *,
    response: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
    if_match: bool = False,
    headers: tuple[str, ...] = (),
    idempotency_key: bool = False,
) -> Callable[[F], F]:
    """Register ``view`` as ``method path`` on ``bp`` and in the document."""

    def register(view: F) -> F:
        endpoint = view.__name__
        doc = (view.__doc__ or "").strip()
        summary, _, description = doc.partition("\n")
        OPERATIONS[f"{bp.name}.{endpoint}"] = Operation(
            method=method,
            path=path,
            endpoint=endpoint,
            summary=summary.strip(),
            description=" ".join(description.split()),
            query=query,
            body=body,
            response=response,
            status=status,
            errors=errors,
            requires_principal=getattr(view, "requires_principal", False),
            if_match=if_match,
            headers=headers,
            idempotency_key=idempotency_key,
        )
        bp.add_url_rule(path, endpoint=endpoint, view_func=view, methods=[method])
        return view

    return register


def current_operation() -> Operation:
    return OPERATIONS[request.endpoint or ""]


# --- Reading requests: 415, 400, 422 -------------------------------------------------


class ValidationFailed(UnprocessableEntity):
    """422, with the messages for each field: {"customer": ["…"]}."""

    description = "Some fields are not valid. Nothing was changed."

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__()
        self.fields = fields


class MalformedJson(BadRequest):
    description = "The body is not valid JSON."
    api_reason = "malformed_json"


def fields_from(error: ValidationError) -> dict[str, list[str]]:
    """pydantic's errors as {field: [messages]}; problems with the whole body go to "body"."""
    fields: dict[str, list[str]] = {}
    for problem in error.errors(include_url=False, include_input=False):
        location = problem["loc"]
        name = str(location[0]) if location else "body"
        fields.setdefault(name, []).append(problem["msg"])
    return fields


def read_body(model: type[M]) -> M:
    """The request's JSON body, validated by ``model`` (the operation's declared body)."""
    assert current_operation().body is model, "read_body() with a model the route did not declare"
    if not request.mimetype or not (
        request.mimetype == "application/json" or request.mimetype.endswith("+json")
    ):
        raise UnsupportedMediaType("Send the body as JSON (Content-Type: application/json).")
    try:
        return model.model_validate_json(request.get_data(cache=True))
    except ValidationError as error:
        if any(problem["type"] == "json_invalid" for problem in error.errors()):
            raise MalformedJson() from None
        raise ValidationFailed(fields_from(error)) from None


def read_query(model: type[M]) -> M:
    """The query string, validated by ``model``; a repeated parameter counts once."""
    assert current_operation().query is model, "read_query() with a model the route did not declare"
    try:
        return model.model_validate(request.args.to_dict(flat=True))
    except ValidationError as error:
        raise ValidationFailed(fields_from(error)) from None


def respond(
    payload: BaseModel | None, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """JSON from a response model (the operation's declared one), or an empty 204."""
    operation = current_operation()
    if payload is None:
        assert operation.response is None, "respond(None) on a route that declares a body"
        return Response(status=status, headers=headers)
    assert isinstance(payload, operation.response or ()), "respond() with an undeclared model"
    return Response(
        payload.model_dump_json(), status=status, headers=headers, mimetype="application/json"
    )
