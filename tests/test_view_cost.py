"""What the invoice page's own work costs (issue 21): the scope's statement, the policy's
decisions and the page's buttons. Each saving is checked for the guarantee it keeps and
for the shape that makes it cheap, never by timing (bench/ and the issue measure time)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import inspect
from sqlalchemy.exc import InvalidRequestError

from invoiceapp.authz.scope import invoice_in_my_orgs_or_404, visible_invoice_by_public_id
from invoiceapp.principal import require_principal
from invoiceapp.views import invoices as invoices_view
from invoiceapp.views.invoices import SHOWN_COLUMNS
from support import signed_in_client, statements_run


def selected_columns(statement: str) -> set[str]:
    found = re.match(r"SELECT (.*?) FROM ", statement)
    assert found, statement
    return {column.strip() for column in found.group(1).split(",")}


@pytest.mark.parametrize(
    ("email", "public_id"), [("ada@acme.test", "inv_7"), ("grace@acme.test", "inv_42")]
)
def test_the_invoice_page_loads_only_the_columns_it_shows(
    app: Flask, email: str, public_id: str
) -> None:
    """11 of the invoice's 16 columns: fewer objects built per execute (psycopg builds one
    for each column of each result). Grace is in two organizations: inv_42 is Globex's."""
    client = signed_in_client(app, email)
    assert client.get(f"/invoices/{public_id}").status_code == 200
    with statements_run(app) as statements:
        page = client.get(f"/invoices/{public_id}")
    assert page.status_code == 200
    invoice_reads = [s for s in statements if s.startswith("SELECT invoices.")]
    assert len(invoice_reads) == 1, statements
    expected = {"invoices.id"} | {f"invoices.{name}" for name in SHOWN_COLUMNS}
    assert selected_columns(invoice_reads[0]) == expected


def test_a_column_the_invoice_page_did_not_load_raises_rather_than_costing_a_query(
    app: Flask,
) -> None:
    """raiseload: a template that starts reading another column fails its tests loudly,
    instead of quietly adding a statement to every invoice page."""
    client = signed_in_client(app, "ada@acme.test")
    with client:  # the page's request context stays open: its session, its principal
        assert client.get("/invoices/inv_7").status_code == 200
        invoice = invoice_in_my_orgs_or_404("inv_7", only=SHOWN_COLUMNS)
        assert invoice.status == "sent" and invoice.customer == "Wayne Enterprises"
        with pytest.raises(InvalidRequestError):
            _ = invoice.version
    # Everything else that looks an invoice up still loads all of it (edit forms, the API).
    with client:
        assert client.get("/invoices/inv_7/edit").status_code == 200
        assert invoice_in_my_orgs_or_404("inv_7").version >= 1


def test_the_scope_statement_is_built_once_per_organization_count_and_never_rewritten() -> None:
    """One bound parameter per organization instead of an expanding IN, which SQLAlchemy
    turns into SQL again on every execute."""
    assert visible_invoice_by_public_id(2) is visible_invoice_by_public_id(2)
    sql = str(visible_invoice_by_public_id(2))
    assert "POSTCOMPILE" not in sql
    assert "invoices.organization_id IN (:org_0, :org_1)" in sql
    assert "invoices.deleted_at IS NULL" in sql and "invoices.public_id = :public_id" in sql


def test_the_invoice_arrives_with_the_organization_the_principal_already_read(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy reads the plan, the flags and the security policy off
    invoice.organization: the lookup hands over the principal's own object (the one the
    lazy loader would have looked up in the session), so the loader never runs for it."""
    seen: list[bool] = []
    real_authorize = invoices_view.authorize

    def authorize(action: str, resource: Any, **context: Any) -> Any:
        principal = require_principal()
        already = "organization" in inspect(resource).dict  # before anyone read it
        seen.append(already and resource.organization is principal.organizations[
            resource.organization_id
        ])  # fmt: skip
        return real_authorize(action, resource, **context)

    monkeypatch.setattr(invoices_view, "authorize", authorize)
    client = signed_in_client(app, "grace@acme.test")
    for public_id in ("inv_7", "inv_42"):  # Acme's, Globex's: both of hers
        assert client.get(f"/invoices/{public_id}").status_code == 200
    assert seen == [True, True]
