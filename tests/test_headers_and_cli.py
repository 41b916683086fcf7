"""Security headers on every response, and the command-line helpers."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from invoiceapp.db import utcnow
from invoiceapp.models import UserSession
from support import signed_in_client


def test_pages_forbid_framing_sniffing_and_foreign_scripts(client: FlaskClient) -> None:
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_signed_in_pages_are_not_cached(app: Flask) -> None:
    client = signed_in_client(app, "ada@acme.test")
    assert client.get("/invoices/inv_7").headers["Cache-Control"] == "no-store"


def test_policy_command_prints_the_table(app: Flask) -> None:
    output = app.test_cli_runner().invoke(args=["policy"]).output
    delete_row = next(line for line in output.splitlines() if line.startswith("invoice.delete"))
    # owner, admin, member, and a custom role holding the action
    assert delete_row.split() == ["invoice.delete", "yes", "yes", "no", "yes"]
    assert "org.billing.update" in output


def test_prune_sessions_removes_only_expired_ones(app: Flask, db: Session) -> None:
    signed_in_client(app, "ada@acme.test")
    signed_in_client(app, "linus@acme.test")
    stale = db.scalars(select(UserSession)).first()
    assert stale is not None
    stale.last_seen_at = utcnow() - timedelta(days=1)
    db.commit()
    result = app.test_cli_runner().invoke(args=["prune-sessions"])
    assert "removed 1 expired sessions" in result.output
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(UserSession)) == 1
