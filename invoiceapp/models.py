"""The schema: organizations, users, memberships (roles), invoices, server-side sessions.

The triggers the database runs on these tables (counts, the append-only audit log) are in
invoiceapp/db_triggers.py, attached to this metadata at the end of this file.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

from flask_login import UserMixin
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base, UTCDateTime, utcnow
from .db_triggers import attach_triggers


class Plan(enum.StrEnum):
    FREE = "free"
    PRO = "pro"


class Role(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class InvoiceStatus(enum.StrEnum):
    DRAFT = "draft"
    SENT = "sent"
    PAID = "paid"
    VOID = "void"


# Every currency here has two decimal places, so amounts are stored in cents.
CURRENCIES = ("EUR", "USD", "GBP", "CHF", "CAD", "AUD", "SEK", "NOK", "DKK")
MAX_AMOUNT_MINOR = 1_000_000_000 * 100


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def _in_not(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} NOT IN ({quoted})"


# What a role column holds: "owner", "admin", "member" or a custom role's key.
ROLE_KEY_SHAPE = "length(role) > 0 AND role = lower(role)"


# The security policy's choices (invoiceapp.authz.org_security says what each means).
PROOF_RULES = ("any", "no_mailed", "second_factor", "passkey")
TOKEN_CREATORS = ("everyone", "managers", "nobody")


class Organization(Base):
    __tablename__ = "organizations"
    __table_args__ = (
        CheckConstraint(_in("plan", tuple(p.value for p in Plan)), name="plan"),
        CheckConstraint("length(slug) > 0", name="slug_not_empty"),
        CheckConstraint(_in("proof_rule", PROOF_RULES), name="proof_rule"),
        CheckConstraint(_in("token_creators", TOKEN_CREATORS), name="token_creators"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(16), default=Plan.FREE.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The highest invoice number handed out so far. Incremented with UPDATE … RETURNING
    # (invoiceapp.invoicing.allocate_invoice_number), so parallel creates never collide.
    last_invoice_number: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A feature flag, switched by the owner: one more input to the policy (invoice.duplicate).
    invoice_duplication_enabled: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # "This organization requires two-factor": a policy input like the plan and the flag.
    requires_two_factor: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # The security policy (/orgs/<slug>/security; invoiceapp.authz.org_security reads it).
    # Which sign-in proofs reach the data: "any", "no_mailed", "second_factor", "passkey".
    # "second_factor" and "passkey" count only while requires_two_factor is on, so that
    # rule and its checkbox on the settings page stay exactly what they were.
    proof_rule: Mapped[str] = mapped_column(String(16), default="any", server_default="any")
    # None: the account's own limits (session lifetime, FRESH_AGE_SECONDS) apply.
    max_session_hours: Mapped[int | None] = mapped_column(Integer, default=None)
    elevation_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    # Invitations only to these domains, space-separated; "" means any address.
    invitation_domains: Mapped[str] = mapped_column(String(500), default="", server_default="")
    # Who may hold API tokens for it: "everyone", "managers" (owners, admins), "nobody".
    token_creators: Mapped[str] = mapped_column(
        String(16), default="everyone", server_default="everyone"
    )
    token_max_days: Mapped[int | None] = mapped_column(Integer, default=None)
    # Under a proof rule stricter than "any", API tokens may still read (never write).
    tokens_may_read: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # How many days the audit log keeps its records; None keeps them forever. Only the
    # operator's ``flask audit prune`` removes older ones (invoiceapp.audit_retention).
    audit_retention_days: Mapped[int | None] = mapped_column(Integer, default=None)

    # The database's ON DELETE CASCADE removes memberships; the ORM must not try first.
    memberships: Mapped[list[Membership]] = relationship(
        back_populates="organization", cascade="all, delete-orphan", passive_deletes=True
    )


class User(UserMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        # Emails are normalised to lower case before they are stored, so a plain
        # unique constraint is a case-insensitive one.
        CheckConstraint("email = lower(email)", name="email_lowercase"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    # Only ever an Argon2id hash (see invoiceapp.authn.passwords); never the password.
    password_hash: Mapped[str] = mapped_column(String(255))
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # TOTP (RFC 6238): the secret is encrypted at rest (invoiceapp.authn.totp), never logged.
    # Enrolment completes only when a correct code confirms it (totp_enabled_at set).
    totp_secret_encrypted: Mapped[str | None] = mapped_column(String(255), default=None)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # The last time step a code was accepted for: a code works once only.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # The proof of the session that turned TOTP on ("password", "passkey", ...); None for
    # factors older than this record (see invoiceapp.authn.second_factor).
    totp_added_with: Mapped[str | None] = mapped_column(String(32), default=None)
    # Wrong second-step codes in a row (invoiceapp.authn.counters): at the limit, codes
    # are refused until a password reset or a recovery code (NIST SP 800-63B).
    second_factor_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The sign-in methods the account holder chose (/account/security): the password can be
    # turned off once a passkey exists, mailed codes and links turned off (one switch).
    password_sign_in: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    email_sign_in: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Platform support staff (invoiceapp.support_access): may *ask* an organization for
    # support access, nothing more. Set only by ``flask staff grant``; no page or API can.
    is_staff: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None


class Membership(Base):
    """A user's role in one organization. Roles are per organization, never global."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("user_id", "organization_id"),
        # A built-in role or a custom role's key (CustomRole): never empty, lower case.
        CheckConstraint(ROLE_KEY_SHAPE, name="role"),
        # At most one owner per organization, whatever the code does. (At least one is
        # checked at commit: invoiceapp.organizations, "Exactly one owner".)
        Index(
            "ix_memberships_one_owner",
            "organization_id",
            unique=True,
            sqlite_where=text("role = 'owner'"),
            postgresql_where=text("role = 'owner'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships")
    organization: Mapped[Organization] = relationship(back_populates="memberships")


class CustomRole(Base):
    """A role an organization's owner defined: a name and actions of the policy table.

    Memberships and invitations hold its ``key`` in their role column, like "admin". Which
    actions a custom role may hold, and how each is answered, is in invoiceapp.authz.policy.
    """

    __tablename__ = "custom_roles"
    __table_args__ = (
        UniqueConstraint("organization_id", "key"),
        CheckConstraint(_in_not("key", tuple(r.value for r in Role)), name="key_not_built_in"),
        CheckConstraint("length(key) > 0 AND key = lower(key)", name="key_shape"),
        CheckConstraint("length(name) > 0", name="name_not_empty"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    # Made from the name when the role is created, then fixed: renaming keeps members' roles.
    key: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(40))
    # Action names, space-separated and sorted ("invoice.export invoice.read").
    actions: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def action_list(self) -> list[str]:
        return self.actions.split()


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("organization_id", "number"),
        CheckConstraint(_in("status", tuple(s.value for s in InvoiceStatus)), name="status"),
        CheckConstraint(_in("currency", CURRENCIES), name="currency"),
        CheckConstraint(
            f"amount_minor > 0 AND amount_minor <= {MAX_AMOUNT_MINOR}", name="amount_range"
        ),
        CheckConstraint("length(customer) > 0", name="customer_not_empty"),
        CheckConstraint("due_date >= issue_date", name="due_after_issue"),
        CheckConstraint("number > 0", name="number_positive"),
        # The organization-scoped lists of live invoices, newest first, read from either
        # end (invoiceapp.views.invoices.index, the dashboard, the API): all statuses, and
        # one status. Partial indexes, WHERE deleted_at IS NULL, rather than deleted_at as
        # a column: PostgreSQL treats "deleted_at IS NULL" as a filter, not an equality,
        # so with (organization_id, deleted_at, created_at, id) it sorted the whole
        # organization for every page (EXPLAIN: top-N heapsort of 100,000 rows). Both
        # databases walk these in order and stop after a page; deleted rows are not in them.
        Index(
            "ix_invoices_org_listing",
            "organization_id",
            "created_at",
            "id",
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index(
            "ix_invoices_org_status_listing",
            "organization_id",
            "status",
            "created_at",
            "id",
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # One invoice per create form: a double submit carries the same key (idempotency).
        Index("ix_invoices_creation_key", "organization_id", "creation_key", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # What URLs show. Opaque and random, so ids cannot be counted or guessed.
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    customer: Mapped[str] = mapped_column(String(200))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(8), default=InvoiceStatus.DRAFT.value)
    issue_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Deletes are soft: the row stays for the record, every lookup treats it as gone.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # The one-time key of the form that created it; None for invoices made elsewhere.
    creation_key: Mapped[str | None] = mapped_column(String(64), default=None)
    # Bumped on every change: the ETag of the API and the hidden field of the edit form,
    # so two people editing one invoice cannot silently overwrite each other.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    organization: Mapped[Organization] = relationship()
    created_by: Mapped[User | None] = relationship()

    @property
    def label(self) -> str:
        return f"#{self.number:04d}"


class InvoiceCount(Base):
    """How many live (not deleted) invoices an organization has in each status.

    The dashboard's totals and the invoice list's page count read these few rows instead
    of counting invoices, so they cost the same at 10 invoices and at 100,000.

    The database keeps them right itself, with triggers on invoices (db_triggers.py, and in
    migration 0006), rather than an app function every write path must remember to call:
    invoices are written by the pages, the API, status changes, copies, the seed's bulk
    insert, the tests' raw SQL and whatever comes next, and a trigger covers them all,
    in the same transaction, so a rollback takes the count back too. The cost: a create,
    status change or delete also writes one or two of these rows, and on PostgreSQL holds
    their locks until commit (creates in one organization already queue on its invoice
    number; see invoiceapp.invoicing.allocate_invoice_number). tests/test_scale.py proves
    the counts equal COUNT(*) after every kind of write, on SQLite and on PostgreSQL.
    """

    __tablename__ = "invoice_counts"
    __table_args__ = (
        CheckConstraint(_in("status", tuple(s.value for s in InvoiceStatus)), name="status"),
    )

    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(8), primary_key=True)
    live_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class UserSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Safe to show and to put in URLs (revoke buttons); unrelated to the token.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    active_organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="SET NULL"), default=None, index=True
    )
    remember: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The last time a password was entered in this session: what "elevated" is measured from.
    authenticated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip_address: Mapped[str | None] = mapped_column(String(45), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(300), default=None)
    # Wrong passwords typed at /reauthenticate; at REAUTH_MAX_FAILURES the session ends.
    failed_reauthentications: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # How this session was last proven, at authenticated_at: "password", "password+totp",
    # "password+recovery_code" or "passkey". Strength is one more input to authorization.
    proof: Mapped[str] = mapped_column(String(32), default="password", server_default="password")
    # View-as mode (invoiceapp.authz.view_as): this session looks at one organization as a
    # member (view_as_user_id) or a role (view_as_role) would. Who is signed in stays the same.
    view_as_organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="SET NULL"), default=None, index=True
    )
    view_as_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    view_as_role: Mapped[str | None] = mapped_column(String(64), default=None)

    user: Mapped[User] = relationship(foreign_keys=[user_id])


class TokenPurpose(enum.StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"
    CHANGE_EMAIL = "change_email"
    # The mailbox owner takes back an address that an unverified account holds.
    CLAIM_ADDRESS = "claim_address"


class AccountToken(Base):
    """A single-use link sent by mail. Only the SHA-256 of the token is stored."""

    __tablename__ = "account_tokens"
    __table_args__ = (
        CheckConstraint(_in("purpose", tuple(p.value for p in TokenPurpose)), name="purpose"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The address a link was sent to: a verification is for that address only, and an
    # email change takes effect only when the new address answers.
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    user: Mapped[User] = relationship()


class SecurityEvent(Base):
    """Something that happened to an account, for its owner to review on /account/security.

    Never a password, a token or a hash: only what happened, when, from where.
    """

    __tablename__ = "security_events"
    __table_args__ = (Index("ix_security_events_user_created", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    ip_address: Mapped[str | None] = mapped_column(String(45), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(300), default=None)
    detail: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Invitation(Base):
    """An invitation to join an organization with a role, sent by mail as a single-use link."""

    __tablename__ = "invitations"
    __table_args__ = (
        CheckConstraint(ROLE_KEY_SHAPE, name="role"),
        Index("ix_invitations_org_email", "organization_id", "email"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # For revoke/resend buttons; unrelated to the token in the mailed link.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    organization: Mapped[Organization] = relationship()
    invited_by: Mapped[User | None] = relationship()

    @property
    def pending(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None


class ShareAccess(enum.StrEnum):
    """What a share lets its guest do (the policy's SHARE_ACCESS says which actions)."""

    READ = "read"
    READ_MARK_PAID = "read_mark_paid"


class Share(Base):
    """One customer's invoices shared with a person outside the organization (a guest).

    Mailed like an invitation, as a single-use link whose SHA-256 alone is stored; once
    accepted it is a grant to that user, an input to can() until it expires or is revoked.
    """

    __tablename__ = "shares"
    __table_args__ = (
        CheckConstraint(_in("access", tuple(a.value for a in ShareAccess)), name="access"),
        CheckConstraint("length(customer) > 0", name="customer_not_empty"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # For the revoke button; unrelated to the token in the mailed link.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    customer: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    access: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    shared_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    # Who accepted it: the grant belongs to this user from then on.
    guest_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Both the link and the grant end here.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    organization: Mapped[Organization] = relationship()
    shared_by: Mapped[User | None] = relationship(foreign_keys=[shared_by_id])
    guest: Mapped[User | None] = relationship(foreign_keys=[guest_id])


class AuditEvent(Base):
    """One authorization decision or sensitive action, kept for the organization's owners.

    Append-only in the database itself: triggers refuse UPDATE and DELETE (db_triggers.py, and in
    migration 0004). No foreign keys, so deleting a user or an organization never has to
    touch the record.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        # The log's pages, newest first, read from either end (invoiceapp.views.audit);
        # the same order within one action and within one actor, for the log's filters.
        Index("ix_audit_events_org_created", "organization_id", "created_at", "id"),
        Index("ix_audit_events_org_action", "organization_id", "action", "created_at", "id"),
        Index("ix_audit_events_org_actor", "organization_id", "actor_email", "created_at", "id"),
        # One place in one organization's chain for each record; the export reads this order.
        Index("ux_audit_events_chain", "organization_id", "chain_seq", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(Integer, default=None)
    actor_email: Mapped[str | None] = mapped_column(String(320), default=None)
    organization_id: Mapped[int | None] = mapped_column(Integer, default=None)
    action: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(64), default=None)
    decision: Mapped[str] = mapped_column(String(8))  # "allowed" or "denied"
    status: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(300), default="")
    ip_address: Mapped[str | None] = mapped_column(String(45), default=None)
    # Which entry of the policy decided a refusal ("invoice state", "token scope", …): the
    # same words as the 403 page. Empty for allowed actions.
    rule: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # The tamper-evident chain (invoiceapp.audit_chain): each organization's records are
    # numbered 1, 2, 3, … and each one's hash covers its content and the hash before it.
    chain_seq: Mapped[int | None] = mapped_column(Integer, default=None)
    previous_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    record_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    # Support access (invoiceapp.support_access): the actor is the support engineer; these
    # say whose permission they acted under, and why. NULL for everything else.
    on_behalf_basis: Mapped[str | None] = mapped_column(String(300), default=None)
    support_reason: Mapped[str | None] = mapped_column(String(500), default=None)


class AuditCount(Base):
    """How many records an organization's audit log holds, per action, decision and actor.

    The log's page count, under any of its filters, and the action filter's choices read
    these rows instead of counting records, which a busy organization has by the hundred
    thousand. Kept by a trigger on audit_events, like InvoiceCount; the log is append-only,
    so INSERT is the only change to follow. An anonymous actor is counted as ''. Records
    about no organization are not counted (no page shows them). No foreign key, like the
    log itself.
    """

    __tablename__ = "audit_counts"

    organization_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str] = mapped_column(String(64), primary_key=True)
    decision: Mapped[str] = mapped_column(String(8), primary_key=True)
    actor_email: Mapped[str] = mapped_column(String(320), primary_key=True)
    records: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AuditRepeat(Base):
    """Refusals of one actor, for one action, in one organization's log, in one window.

    The first refusal of a window is written to audit_events in full (the evidence); the
    ones after it only add to ``refusals`` here, shown beside that record. Nobody outside
    an organization can flood a log its owner cannot clean (it is append-only): a window
    costs one record, however many requests it saw. Not append-only itself: a counter.
    """

    __tablename__ = "audit_repeats"
    __table_args__ = (UniqueConstraint("bucket", "window_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Who was refused what, where: "org 3 · user 12 · invoice.delete" (invoiceapp.audit).
    bucket: Mapped[str] = mapped_column(String(200))
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    # The record the window's first refusal wrote; set in the same transaction.
    event_id: Mapped[int | None] = mapped_column(Integer, unique=True, default=None)
    refusals: Mapped[int] = mapped_column(Integer, default=1)  # the first one included
    last_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditChain(Base):
    """The newest link of one organization's audit chain (organization 0: records of no
    organization). Writers take this row's lock to append, so each organization's records
    queue only behind their own organization's, never behind one lock for the whole app."""

    __tablename__ = "audit_chains"

    organization_key: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """Where an organization's audit chain now starts, after ``flask audit prune`` removed
    its oldest records: the last removed record's number and hash (the next record's
    ``previous_hash``), how many were removed in all, the cut-off date and when. Signed
    with a key derived from SECRET_KEY (invoiceapp.audit_retention), so an export that
    starts here can show the start was ours. No foreign key, like the log itself."""

    __tablename__ = "audit_checkpoints"

    organization_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))
    removed: Mapped[int] = mapped_column(Integer)
    removed_before: Mapped[datetime] = mapped_column(UTCDateTime)
    pruned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    signature: Mapped[str] = mapped_column(String(64))


class AuditPrunePermit(Base):
    """SQLite's permission slip for removing audit records: its trigger refuses a DELETE on
    audit_events unless this table holds a row. ``flask audit prune`` inserts the row and
    deletes it again inside its own transaction, so no other connection ever sees it.
    (PostgreSQL uses a transaction-local setting instead; see invoiceapp.db_triggers.)"""

    __tablename__ = "audit_prune_permits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class TokenScope(enum.StrEnum):
    READ = "read"
    WRITE = "write"


class PersonalAccessToken(Base):
    """An API token for scripts: one user, one organization, a scope, an expiry.

    Shown once as ``ia_pat_…``; only its SHA-256 is stored. It never exceeds its user:
    every request asks the policy about the user's role *and* the token's scope.
    """

    __tablename__ = "personal_access_tokens"
    __table_args__ = (
        CheckConstraint(_in("scope", tuple(s.value for s in TokenScope)), name="scope"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(8))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    user: Mapped[User] = relationship()
    organization: Mapped[Organization] = relationship()


class RecoveryCode(Base):
    """One of ten single-use codes for when the authenticator is lost. Stored keyed-hashed."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Passkey(Base):
    """A WebAuthn credential: something you have (and, with user verification, are)."""

    __tablename__ = "passkeys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # base64url of the credential id the authenticator chose.
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    name: Mapped[str] = mapped_column(String(100))
    transports: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # The proof of the session that added it, as for User.totp_added_with.
    added_with: Mapped[str | None] = mapped_column(String(32), default=None)


class WebAuthnChallenge(Base):
    """A challenge for one passkey ceremony: single use, short-lived, kept server-side."""

    __tablename__ = "webauthn_challenges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # base64url of the random challenge; what the browser signs.
    challenge: Mapped[str] = mapped_column(String(128), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))  # "register", "authenticate"
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class SecurityCounter(Base):
    """Failed sign-ins per claimed account, for the growing delay (invoiceapp.authn.counters).

    Keyed by a digest of the rate-limit key, never the address itself; unknown addresses
    get rows too, so the delay cannot tell which accounts exist.
    """

    __tablename__ = "security_counters"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # No attempt is checked before this time (the delay); None: no wait.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class EmailSignInKind(enum.StrEnum):
    CODE = "email_code"
    LINK = "magic_link"


class EmailSignIn(Base):
    """A pending sign-in by mail: a one-time code or a magic link (invoiceapp.authn.email_codes,
    invoiceapp.authn.magic_links). Only digests are stored: of the code (keyed, so a copy of
    the table cannot be brute-forced offline), of the link's token, and of the nonce the
    requesting browser holds, which binds the sign-in to that browser."""

    __tablename__ = "email_sign_ins"
    __table_args__ = (
        CheckConstraint(_in("kind", tuple(k.value for k in EmailSignInKind)), name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), index=True)
    browser_hash: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Wrong codes typed against this one; at EMAIL_CODE_MAX_TRIES it is dead (counters.py).
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    user: Mapped[User] = relationship()


class SupportState(enum.StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    DENIED = "denied"
    ENDED = "ended"


# The states in which a grant is still open: one at most per engineer and organization.
OPEN_SUPPORT_STATES = (SupportState.REQUESTED.value, SupportState.APPROVED.value)


class SupportGrant(Base):
    """A support engineer's request for access to one organization, and the owner's answer.

    Approved, it is an input to can() (invoiceapp.support_access) until ``expires_at`` or
    until anyone ends it. Rows are kept after they end: they are the organization's record
    of who was let in, by whom, for how long and why.
    """

    __tablename__ = "support_grants"
    __table_args__ = (
        CheckConstraint(_in("state", tuple(s.value for s in SupportState)), name="state"),
        CheckConstraint("length(reason) >= 10 AND length(reason) <= 500", name="reason_length"),
        # One open request or grant per engineer and organization, kept by the database.
        Index(
            "ux_support_grants_open",
            "organization_id",
            "staff_user_id",
            unique=True,
            sqlite_where=text("state IN ('requested', 'approved')"),
            postgresql_where=text("state IN ('requested', 'approved')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    staff_user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[str] = mapped_column(String(500))
    # "read_only" (invoice.read and nothing else), "member", "admin" or a custom role key.
    role: Mapped[str] = mapped_column(String(16), default="read_only", server_default="read_only")
    state: Mapped[str] = mapped_column(String(16), default=SupportState.REQUESTED.value)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    approved_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Who ended it (the engineer or an owner); NULL with ended_at set: it expired.
    ended_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )

    organization: Mapped[Organization] = relationship()
    staff_user: Mapped[User] = relationship(foreign_keys=[staff_user_id])
    approved_by: Mapped[User | None] = relationship(foreign_keys=[approved_by_id])
    ended_by: Mapped[User | None] = relationship(foreign_keys=[ended_by_id])


# Every table is defined: create_all() also creates their triggers (invoiceapp.db_triggers).
attach_triggers(Base.metadata, AuditEvent.__table__)
