"""What both peers share: the same data shape as InvoiceApp's (users, organizations, a role
per membership, invoices), the same seed rows the page reads, and one page template padded
to the size of InvoiceApp's invoice page, so that only the security machinery differs.

Plain SQLAlchemy 2.0 with a session per request; nothing here knows about sign-in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Column, ForeignKey, String, Table, Text, create_engine, select
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    scoped_session,
    sessionmaker,
)

# Both peers answer /invoices/<public_id> for the signed-in user's organizations and let
# these roles read it: the one permission check of the page.
ROLES_THAT_MAY_READ = ("owner", "admin", "member", "accountant")
EMAIL, PASSWORD = "ada@acme.test", "correct-horse-battery-staple"
PAGE_BYTES = int(os.environ.get("PEER_PAGE_BYTES", "9000"))  # InvoiceApp's page, measured


@dataclass
class Models:
    Base: type[DeclarativeBase]
    User: Any
    Role: Any
    Organization: Any
    Membership: Any
    Invoice: Any


def make_models(user_mixin: type, role_mixin: type = object) -> Models:
    """The tables, with the user (and role) classes mixing in what the peer's library wants
    (Flask-Login's UserMixin, Flask-Security-Too's UserMixin and RoleMixin)."""

    class Base(DeclarativeBase):
        pass

    roles_users = Table(
        "roles_users",
        Base.metadata,
        Column("user_id", ForeignKey("users.id"), primary_key=True),
        Column("role_id", ForeignKey("roles.id"), primary_key=True),
    )

    class Role(Base, role_mixin):  # type: ignore[misc, valid-type]
        __tablename__ = "roles"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(80), unique=True)
        description: Mapped[str | None] = mapped_column(String(255), default=None)
        permissions: Mapped[str | None] = mapped_column(Text, default=None)
        update_datetime: Mapped[datetime | None] = mapped_column(default=None)

    class User(Base, user_mixin):  # type: ignore[misc, valid-type]
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str] = mapped_column(String(255), unique=True)
        password: Mapped[str | None] = mapped_column(String(255))
        active: Mapped[bool] = mapped_column(default=True)
        fs_uniquifier: Mapped[str] = mapped_column(String(64), unique=True)
        confirmed_at: Mapped[datetime | None] = mapped_column(default=None)
        last_login_at: Mapped[datetime | None] = mapped_column(default=None)
        current_login_at: Mapped[datetime | None] = mapped_column(default=None)
        last_login_ip: Mapped[str | None] = mapped_column(String(64), default=None)
        current_login_ip: Mapped[str | None] = mapped_column(String(64), default=None)
        login_count: Mapped[int | None] = mapped_column(default=None)
        roles: Mapped[list[Role]] = relationship(secondary=roles_users)

    class Organization(Base):
        __tablename__ = "organizations"
        id: Mapped[int] = mapped_column(primary_key=True)
        slug: Mapped[str] = mapped_column(String(64), unique=True)
        name: Mapped[str] = mapped_column(String(200))

    class Membership(Base):
        __tablename__ = "memberships"
        user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
        organization_id: Mapped[int] = mapped_column(
            ForeignKey("organizations.id"), primary_key=True
        )
        role: Mapped[str] = mapped_column(String(20))

    class Invoice(Base):
        __tablename__ = "invoices"
        id: Mapped[int] = mapped_column(primary_key=True)
        public_id: Mapped[str] = mapped_column(String(40), unique=True)
        organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
        number: Mapped[int]
        customer: Mapped[str] = mapped_column(String(200))
        amount_minor: Mapped[int]
        currency: Mapped[str] = mapped_column(String(3))
        status: Mapped[str] = mapped_column(String(10))
        issue_date: Mapped[date]
        due_date: Mapped[date]
        organization: Mapped[Organization] = relationship(lazy="joined")

    return Models(Base, User, Role, Organization, Membership, Invoice)


def init_database(app: Flask) -> scoped_session[Session]:
    """One engine per process and a session per request (thread), removed at teardown."""
    engine = create_engine(app.config["DATABASE_URL"], pool_pre_ping=True)
    session = scoped_session(sessionmaker(engine, expire_on_commit=False))
    app.extensions["peer_session"] = session

    @app.teardown_appcontext
    def close(_exc: BaseException | None) -> None:
        session.remove()

    return session


def db() -> Session:
    return current_app.extensions["peer_session"]()


def create_all(models: Models, url: str, user: Any) -> None:
    """The tables, the user (already made by the peer, password hashed its way) and Acme."""
    engine = create_engine(url)
    models.Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(user)
        session.flush()
        seed_rows(models, session, user.id)
    engine.dispose()


def visible_invoice(models: Models, user_id: int, public_id: str) -> tuple[Any, str] | None:
    """The invoice and the user's role in its organization, if it is in one of theirs."""
    invoice, membership = models.Invoice, models.Membership
    row = (
        db()
        .execute(
            select(invoice, membership.role)
            .join(membership, membership.organization_id == invoice.organization_id)
            .where(membership.user_id == user_id, invoice.public_id == public_id)
        )
        .first()
    )
    return None if row is None else (row[0], row[1])


def seed_rows(models: Models, session: Session, user_id: int) -> None:
    """Acme with inv_7 (InvoiceApp's page in the bench), and the user as its owner."""
    acme = models.Organization(slug="acme", name="Acme Corp")
    session.add(acme)
    session.flush()
    session.add(models.Membership(user_id=user_id, organization_id=acme.id, role="owner"))
    session.add(
        models.Invoice(
            public_id="inv_7", organization_id=acme.id, number=7, customer="Stark Industries",
            amount_minor=125_000, currency="EUR", status="sent",
            issue_date=date(2024, 5, 1), due_date=date(2024, 5, 31),
        )
    )  # fmt: skip
    session.commit()


# The page: the fields InvoiceApp shows, then padding to its size (its layout, navigation
# and buttons are markup the peers would have too).
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Invoice {{ invoice.number }}</title></head><body><main><article>
<h1>Invoice {{ invoice.number }} <span class="badge">{{ invoice.status }}</span></h1>
<dl><dt>Customer</dt><dd>{{ invoice.customer }}</dd>
<dt>Amount</dt><dd>{{ "%.2f"|format(invoice.amount_minor / 100) }} {{ invoice.currency }}</dd>
<dt>Issued</dt><dd>{{ invoice.issue_date.isoformat() }}</dd>
<dt>Due</dt><dd>{{ invoice.due_date.isoformat() }}</dd>
<dt>Organization</dt><dd>{{ invoice.organization.name }}</dd>
<dt>Your role here</dt><dd>{{ role }}</dd>
<dt>Reference</dt><dd><code>{{ invoice.public_id }}</code></dd></dl>
</article>{{ padding }}</main></body></html>"""


PADDING = "<!--" + "x" * max(0, PAGE_BYTES - 900) + "-->"
