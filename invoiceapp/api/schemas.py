"""The API's shapes, as pydantic models: they validate requests *and* write the OpenAPI
document (invoiceapp.api.openapi), so the documentation cannot drift from the checks.

Request models forbid unknown fields (422), and none of them has a field for the
organization, the author, the number or the status: those come from the URL, the
principal and the invoice's actions, never from a body (mass assignment). The invoice
fields follow the same rules as the HTML form (invoiceapp.views.invoice_forms).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from ..errors import API_CODES
from ..models import CURRENCIES, InvoiceStatus, TokenScope
from ..money import AmountError, parse_amount
from ..text import visible_text_problem

STATUSES = tuple(status.value for status in InvoiceStatus)
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
PUBLIC_ID_PATTERN = r"^inv_[A-Za-z0-9]{1,32}$"
# What money.parse_amount reads, the same as the invoice form: plain digits, or thousands
# in comma-separated groups of three (1,250.00). No exponents, other digits or decimal
# commas, so "12,50" can never mean 12.50 to one client and 1250 to another.
AMOUNT_PATTERN = r"^([0-9]{1,10}|[0-9]{1,3}(,[0-9]{3}){1,3})(\.[0-9]{1,2})?$"


def _no_default(schema: dict[str, Any]) -> None:
    """Optional in a PATCH, but never null: the document shows no "default": null."""
    schema.pop("default", None)


def _optional_never_null(**field: Any) -> Any:
    """A field that may be left out but, when sent, is never null.

    pydantic never validates a default, so ``None`` here means "not sent" while a sent
    ``null`` still fails the field's type. mypy cannot say "absent but never None", hence
    ``Any``: the annotation stays the type a sent value has.
    """
    return Field(default=None, json_schema_extra=_no_default, **field)


# --- Field rules shared with the HTML form -------------------------------------------


def _form_text_rule(value: str) -> str:
    """The invoice form's own check (control codes, direction overrides, invisible names)."""
    problem = visible_text_problem(value)
    if problem:
        raise PydanticCustomError("invoice_text", problem)
    return value


def _amount_rule(value: str) -> str:
    """The form's money parser decides range and precision; the API keeps the text."""
    try:
        parse_amount(value)
    except AmountError as error:
        raise PydanticCustomError("invoice_amount", str(error)) from None
    return value


def _amount_words_first(value: object) -> object:
    """money.parse_amount's message for a text it refuses; anything else goes on as it is
    (a JSON number then fails the str type, as before)."""
    if isinstance(value, str):
        _amount_rule(value)
    return value


Customer = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_form_text_rule),
    Field(description="Who the invoice is for.", examples=["Stark Industries"]),
]
Amount = Annotated[
    str,
    StringConstraints(pattern=AMOUNT_PATTERN),
    AfterValidator(_amount_rule),
    # Runs first: a refused amount gets money.py's words, the same as on the invoice form
    # ("Use a point before the cents…"), rather than the pattern's.
    BeforeValidator(_amount_words_first),
    Field(
        description="A decimal string with at most two decimals, more than 0 and at most "
        "1,000,000,000. A string, not a JSON number, so no client rounds it. A comma may "
        "only separate thousands (1,250.00); a decimal comma (12,50) is refused.",
        examples=["1250.00"],
    ),
]
Currency = Literal[CURRENCIES]  # type: ignore[valid-type]
Status = Literal[STATUSES]  # type: ignore[valid-type]
IsoDate = Annotated[date, Field(strict=True, description="YYYY-MM-DD", examples=["2024-05-01"])]


def _day_as_written(value: object) -> object:
    """A query's day must be written YYYY-MM-DD: pydantic alone would read "0" as 1970."""
    if isinstance(value, str) and not (len(value) == 10 and value[4] == value[7] == "-"):
        raise PydanticCustomError("date_format", "Give a day as YYYY-MM-DD.")
    return value


QueryDay = Annotated[date, BeforeValidator(_day_as_written)]


class RequestModel(BaseModel):
    """Unknown fields are refused (422), so a typo or a smuggled "status" never passes."""

    model_config = ConfigDict(extra="forbid")


class NewInvoice(RequestModel):
    """POST /api/v1/invoices. Every invoice starts as a draft in the chosen organization."""

    customer: Customer
    amount: Amount
    currency: Currency
    issue_date: IsoDate
    due_date: IsoDate

    @field_validator("due_date")
    @classmethod
    def _due_after_issue(cls, due: date, info: ValidationInfo) -> date:
        issued = info.data.get("issue_date")
        if issued is not None and due < issued:
            raise PydanticCustomError("due_date", "The due date cannot be before the issue date.")
        return due

    @property
    def amount_minor(self) -> int:
        return parse_amount(self.amount)

    def column_values(self) -> dict[str, Any]:
        """The invoice's columns (amount -> amount_minor), as invoicing.create_invoice takes."""
        return {
            "customer": self.customer,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "issue_date": self.issue_date,
            "due_date": self.due_date,
        }


class InvoiceChanges(RequestModel):
    """PATCH /api/v1/invoices/{id}: only the fields sent change. null is refused."""

    customer: Customer = _optional_never_null()
    amount: Amount = _optional_never_null()
    currency: Currency = _optional_never_null()
    issue_date: IsoDate = _optional_never_null()
    due_date: IsoDate = _optional_never_null()

    def column_values(self) -> dict[str, Any]:
        """What was sent, as Invoice columns (amount -> amount_minor)."""
        values = self.model_dump(include=self.model_fields_set)
        if "amount" in values:
            values["amount_minor"] = parse_amount(values.pop("amount"))
        return values


# --- Query strings --------------------------------------------------------------------


class QueryModel(BaseModel):
    """Unknown query parameters are ignored (cache busters); known ones are checked."""

    model_config = ConfigDict(extra="ignore")


class OrganizationQuery(QueryModel):
    organization: str | None = Field(
        default=None,
        pattern=SLUG_PATTERN,
        description="Work in this organization (its slug) instead of the active one.",
    )


class PageQuery(QueryModel):
    limit: int = Field(default=25, ge=1, le=100, description="Items per page.")
    cursor: str | None = Field(
        default=None,
        max_length=400,
        # Cursors are base64url, so 400 characters are 400 bytes in the request line
        # (percent-encoded UTF-8 takes up to 12 bytes each: past gunicorn's 414). Documented
        # here; anything else fails decoding as reason invalid_cursor (api/pagination.py).
        json_schema_extra={"pattern": "^[A-Za-z0-9_-]*$"},
        description="next_cursor from the previous page. Opaque: do not build one.",
    )


class InvoiceListQuery(PageQuery, OrganizationQuery):
    status: Status | None = Field(default=None, description="Only invoices in this status.")


class AuditQuery(PageQuery):
    """The same filters as the audit page (invoiceapp.audit_log.AuditFilters)."""

    decision: Literal["allowed", "denied"] | None = None
    action: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_.-]{0,63}$")
    actor: str | None = Field(
        default=None,
        max_length=320,
        pattern=r"^[^\s@]{1,64}@[^\s@]{1,255}$",
        description="The actor's email address.",
    )
    target: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.@+-]{1,64}$",
        description="The resource: an invoice id (inv_…), an organization slug, a member's id.",
    )
    since: QueryDay | None = Field(default=None, description="From this day (UTC), included.")
    until: QueryDay | None = Field(default=None, description="Up to this day (UTC), included.")


# --- Responses ------------------------------------------------------------------------


class InvoiceOut(BaseModel):
    id: str = Field(description="The public id, as in /invoices/{id}.", examples=["inv_7"])
    number: int
    organization: str = Field(description="The organization's slug.")
    customer: str
    amount: str = Field(examples=["1250.00"])
    currency: Currency
    status: Status
    issue_date: date
    due_date: date
    created_by: str | None = Field(description="The author's email; null once they are gone.")
    created_at: datetime
    updated_at: datetime
    version: int = Field(description='Also sent as the ETag ("3"); send it back in If-Match.')


class InvoicePage(BaseModel):
    items: list[InvoiceOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end."
    )


class UserOut(BaseModel):
    name: str
    email: str
    email_verified: bool


# owner, admin, member, or a custom role's key: roles are per organization.
ROLE_DESCRIPTION = (
    "owner, admin, member, or the key of one of the organization's own roles "
    "(GET /api/v1/orgs/{slug}/roles)"
)


class MembershipOut(BaseModel):
    slug: str
    name: str
    plan: str
    role: str = Field(description=ROLE_DESCRIPTION)
    role_name: str = Field(description="The role as people read it (a custom role's name).")
    audit_retention_days: int | None = Field(
        description="How many days the audit log keeps records; null keeps them forever."
    )


class TokenOut(BaseModel):
    id: str
    name: str
    scope: TokenScope
    organization: str
    created_at: datetime
    expires_at: datetime


class AuthenticationOut(BaseModel):
    method: Literal["session", "token"]
    token: TokenOut | None = Field(description="The token used, for method token.")
    elevated: bool = Field(description="A password was entered recently (sessions only).")


class MeOut(BaseModel):
    user: UserOut
    organizations: list[MembershipOut] = Field(
        description="Where this request can act: every membership for a session, at most "
        "the token's own organization for a token."
    )
    active_organization: str | None
    authentication: AuthenticationOut
    csrf_token: str | None = Field(
        description="For session requests: send it as X-CSRFToken on POST, PATCH, DELETE."
    )


class OrganizationList(BaseModel):
    items: list[MembershipOut]


class MemberOut(BaseModel):
    name: str
    email: str
    role: str = Field(description=ROLE_DESCRIPTION)
    role_name: str = Field(description="The role as people read it (a custom role's name).")
    joined_at: datetime


class RoleOut(BaseModel):
    key: str = Field(description="What a membership's or an invitation's role holds.")
    name: str
    built_in: bool
    actions: list[str] = Field(
        description="The policy's actions the role holds (any rule but a plain no); each is "
        "answered by the rule of the policy table, plan, flags and invoice state included."
    )


class RoleList(BaseModel):
    items: list[RoleOut]


class MemberPage(BaseModel):
    items: list[MemberOut]
    next_cursor: str | None


class AuditEventOut(BaseModel):
    created_at: datetime
    actor_email: str | None
    action: str
    resource_id: str | None
    decision: Literal["allowed", "denied"]
    status: int
    reason: str
    rule: str = Field(
        default="", description="For a refusal: the rule that decided it, as the 403 page names it."
    )
    ip_address: str | None
    seq: int | None = Field(
        default=None, description="The record's number in the organization's hash chain."
    )
    record_hash: str | None = Field(
        default=None,
        description="SHA-256 over the record and the hash of the one before it "
        "(see the JSON Lines export and `flask audit verify`).",
    )
    count: int = Field(
        default=1,
        description="How many refusals this record stands for: the same actor refused the "
        "same action again within the audit window is counted here, not recorded again.",
    )
    last_at: datetime | None = Field(
        default=None, description="When the last of those refusals came (null for one)."
    )
    on_behalf_basis: str | None = Field(
        default=None,
        description="During support access: whose consent the actor (a support engineer) "
        'acted under, as "support access granted by Ada Lovelace"; null otherwise.',
    )
    support_reason: str | None = Field(
        default=None, description="During support access: the reason the engineer gave."
    )


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None


ERROR_CODES = tuple(API_CODES.values())  # every code an error body may carry


class ErrorDetail(BaseModel):
    code: Literal[ERROR_CODES]  # type: ignore[valid-type]
    message: str
    reason: str = _optional_never_null(
        description="A word to branch on: csrf, invalid_token, insufficient_scope, "
        "two_factor_required, reauthentication_required, malformed_json, invalid_cursor; "
        "the organization's security policy adds passkey_required, stronger_sign_in_required, "
        "session_too_old, tokens_not_allowed, token_lifetime_too_long.",
    )
    fields: dict[str, list[str]] = _optional_never_null(
        description="422 only: the messages for each field.",
    )


class ErrorBody(BaseModel):
    error: ErrorDetail
