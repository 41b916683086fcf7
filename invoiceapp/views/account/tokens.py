"""/account/tokens: personal access tokens for the JSON API, made and revoked by their user.

A token is shown once, in the answer to the form that made it, and never again: only its
SHA-256 is stored (invoiceapp.authn.access_tokens). It is never put in a flash message,
which travels in a readable cookie. Everything here acts on the user's own tokens, so a
token id that is not theirs is a 404, like any other scoped lookup.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from wtforms import IntegerField, SelectField, StringField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # new in WTForms 3.3; types-WTForms is 3.2
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, ValidationError

from ...audit import DENIED, record_audit
from ...authn.access_tokens import (
    MAX_EXPIRES_DAYS,
    MAX_NAME_LENGTH,
    MIN_EXPIRES_DAYS,
    issue_access_token,
    live_token_count,
    revoke_access_token,
)
from ...authn.events import EventKind, record_event
from ...authn.gate import login_required
from ...authz.enforce import PermissionDenied, ReauthenticationRequired, authorize
from ...authz.org_security import TOKEN_LIFETIME_RULE, token_creation_refusal
from ...authz.policy import support_token_refusal
from ...authz.scope import my_organizations
from ...db import get_db, utcnow
from ...extensions import failures_limit, outage_safe_key
from ...forms import Form, strip
from ...models import Organization, PersonalAccessToken, TokenScope
from ...path_ids import path_id_or_404
from ...principal import Principal, require_principal

bp = Blueprint("account_tokens", __name__, url_prefix="/account/tokens")

SCOPES = [
    SelectChoice(TokenScope.READ.value, "read: look, never change"),
    SelectChoice(
        TokenScope.WRITE.value, "write: also create, edit and delete, as your role allows"
    ),
]


def _printable_name(_form: Form, field: StringField) -> None:
    if any(unicodedata.category(char) == "Cc" for char in field.data or ""):
        raise ValidationError("Remove the control characters from the name.")


class NewTokenForm(Form):
    """Field names are public (CONTRACT section 5): name, organization, scope, expires_days."""

    name = StringField(
        "Name",
        filters=[strip],
        validators=[
            DataRequired("Name the token after what will use it, like “nightly export”."),
            Length(max=MAX_NAME_LENGTH, message=f"Keep the name to {MAX_NAME_LENGTH} characters."),
            _printable_name,
        ],
        render_kw={"maxlength": MAX_NAME_LENGTH},
    )
    # Choices are the user's own organizations, set per request: another slug is refused.
    organization = SelectField("Organization", validate_choice=True)
    scope = SelectField("Scope", choices=SCOPES, default=TokenScope.READ.value)
    expires_days = IntegerField(
        "Expires after (days)",
        default=30,
        validators=[
            InputRequired("Say after how many days the token stops working."),
            NumberRange(
                MIN_EXPIRES_DAYS,
                MAX_EXPIRES_DAYS,
                f"Choose between {MIN_EXPIRES_DAYS} and {MAX_EXPIRES_DAYS} days.",
            ),
        ],
        render_kw={"min": MIN_EXPIRES_DAYS, "max": MAX_EXPIRES_DAYS, "type": "number"},
    )


@dataclass(frozen=True)
class TokenRow:
    public_id: str
    name: str
    organization: str
    scope: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    state: str  # "active", "expired" or "revoked"


def _form(principal: Principal, *, posted: bool) -> NewTokenForm:
    form = NewTokenForm() if posted else NewTokenForm(formdata=None)
    # Never an organization reached by support access (policy.support_token_refusal).
    organizations = [o for o in my_organizations(principal) if o.id not in principal.support]
    form.organization.choices = [SelectChoice(org.slug, org.name) for org in organizations]
    return form


def _rows(principal: Principal) -> list[TokenRow]:
    now = utcnow()
    tokens = get_db().execute(
        select(PersonalAccessToken, Organization.slug)
        .join(Organization, Organization.id == PersonalAccessToken.organization_id)
        .where(PersonalAccessToken.user_id == principal.user.id)
        .order_by(PersonalAccessToken.created_at.desc(), PersonalAccessToken.id.desc())
    )
    rows = []
    for token, slug in tokens:
        if token.revoked_at is not None:
            state = "revoked"
        elif token.expires_at <= now:
            state = "expired"
        else:
            state = "active"
        rows.append(
            TokenRow(
                public_id=token.public_id,
                name=token.name,
                organization=slug,
                scope=token.scope,
                created_at=token.created_at,
                expires_at=token.expires_at,
                last_used_at=token.last_used_at,
                revoked_at=token.revoked_at,
                state=state,
            )
        )
    return rows


def _page(
    form: NewTokenForm,
    *,
    new_token: str | None = None,
    status: int = 200,
    refusal: str | None = None,
) -> ResponseReturnValue:
    principal = require_principal()
    html = render_template(
        "account/tokens.html",
        form=form,
        rows=_rows(principal),
        new_token=new_token,
        refusal=refusal,
        # No form to fill in and lose: a stale session is sent to confirm it's you first.
        proof_needed_at=_proof_needed_at(principal),
    )
    return html, status


def _proof_needed_at(principal: Principal) -> str | None:
    try:
        authorize("account.tokens.create", principal.user)
    except ReauthenticationRequired as needed:
        return needed.location
    return None


@bp.get("")
@login_required
def index() -> ResponseReturnValue:
    return _page(_form(require_principal(), posted=False))


def _token_creation_limit() -> str:
    return current_app.config["API_TOKEN_CREATE_RATE_LIMIT"]


@outage_safe_key
def _creating_account() -> str:
    return f"api-token-create:{require_principal().user.id}"


def _token_made(response: object) -> bool:
    """Only a token actually made keeps its place in the count (a form error does not)."""
    return getattr(response, "status_code", None) == 201


def _too_many_live_tokens(principal: Principal) -> str | None:
    """Each live token is one more way into the account: their number is bounded."""
    most = current_app.config["MAX_LIVE_API_TOKENS"]
    if live_token_count(get_db(), principal.user.id) < most:
        return None
    return (
        f"You already have {most} tokens that still work, the most one account may have. "
        "Revoke one you no longer use, then make the new one. No token was made."
    )


@bp.post("")
@login_required
@failures_limit(
    _token_creation_limit, name="api-token-create", failed=_token_made, key_func=_creating_account
)
def create() -> ResponseReturnValue:
    principal = require_principal()
    authorize("account.tokens.create", principal.user)  # stale: confirm it's you first
    _refuse_supported_organization(principal)  # 403 naming the support-access rule
    form = _form(principal, posted=True)
    if not form.validate():
        return _page(form, status=422)
    refusal = _too_many_live_tokens(principal)
    if refusal:
        return _page(form, status=409, refusal=refusal)
    organization = next(
        org for org in my_organizations(principal) if org.slug == form.organization.data
    )
    # The organization's security policy: who may hold tokens for it, and for how long.
    refused = token_creation_refusal(
        organization, principal.role_in(organization.id), form.expires_days.data or 0
    )
    if refused is not None:
        field = form.expires_days if refused.rule == TOKEN_LIFETIME_RULE else form.organization
        field.errors = [refused.reason]
        return _page(form, status=422)
    db = get_db()
    _token, raw = issue_access_token(
        db,
        principal.user,
        organization,
        name=form.name.data or "",
        scope=TokenScope(form.scope.data),
        expires_days=form.expires_days.data or 0,
    )
    # The token's name is the owner's own words; the event keeps only what and when.
    record_event(db, principal.user.id, EventKind.API_TOKEN_CREATED)
    db.commit()
    # Shown in this answer only (no-store, like every signed-in page), never stored.
    return _page(_form(principal, posted=False), new_token=raw, status=201)


def _refuse_supported_organization(principal: Principal) -> None:
    """Naming an organization reached by support access is a 403 (and recorded there),
    not a form error: the rule decided it, and the refusal says which."""
    slug = request.form.get("organization", "")
    refusal = support_token_refusal(principal, slug)
    if refusal is None:
        return
    organization = next(o for o in principal.organizations.values() if o.slug == slug)
    record_audit("account.tokens.create", organization_id=organization.id, resource_id=slug,
                 decision=DENIED, status=403, reason=refusal.reason,
                 rule=refusal.rule)  # fmt: skip
    raise PermissionDenied(refusal, organization)


@bp.post("/<public_id>/revoke")
@login_required
def revoke(public_id: str) -> ResponseReturnValue:
    principal = require_principal()
    token = _own_token_or_404(principal, public_id)
    revoke_access_token(token)
    record_event(get_db(), principal.user.id, EventKind.API_TOKEN_REVOKED)
    get_db().commit()
    flash("Token revoked. It stopped working at once.", "success")
    return redirect(url_for("account_tokens.index"), code=303)


def _own_token_or_404(principal: Principal, public_id: str) -> PersonalAccessToken:
    """Only the principal's own tokens can be found: another user's id is a 404 too."""
    path_id_or_404("access_token", public_id)
    token = get_db().scalar(
        select(PersonalAccessToken).where(
            PersonalAccessToken.public_id == public_id,
            PersonalAccessToken.user_id == principal.user.id,
        )
    )
    if token is None:
        abort(404)
    return token
