"""/orgs/<slug>/security: the organization's security policy, set by its owner.

The page runs the lesson's steps like every organization page: scope (404), then
authorize("org.security.update"), which is owner-only and asks for a fresh proof that used
the second factor when the owner has one. An owner without a second factor still reaches
the page (with a fresh password) and learns there that saving needs one: a policy about
how members prove who they are is only as strong as its owner's own sign-in.

What each setting means is decided in invoiceapp.authz.org_security, which can() asks on
every request; this page only stores the choices, audits each change and mails the owner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from wtforms import BooleanField, RadioField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # new in WTForms 3.3; types-WTForms is 3.2
from wtforms.validators import ValidationError

from ..audit import record_audit
from ..authn.access_tokens import MAX_EXPIRES_DAYS
from ..authn.gate import login_required
from ..authn.second_factor import has_second_factor
from ..authz import org_security as rules
from ..authz.enforce import authorize
from ..authz.scope import organization_in_my_orgs_or_404
from ..db import get_db, utcnow
from ..forms import Form, strip
from ..mail import absolute_url, send_mail
from ..models import Membership, Organization, PersonalAccessToken, Role, User
from ..principal import require_principal

bp = Blueprint("org_security", __name__, url_prefix="/orgs")

NEEDS_SECOND_FACTOR = (
    "Set up a second factor for your own account first (an authenticator app or a passkey, "
    "under Account). The security policy decides how everyone here must sign in, so "
    "changing it needs more than a password."
)


def _whole_number(low: int, high: int, what: str) -> Callable[[Form, StringField], None]:
    """A validator for an optional whole number between ``low`` and ``high``; empty is fine
    (it means "no limit of its own"). The typed text stays in the field on error."""

    def check(_form: Form, field: StringField) -> None:
        text = (field.data or "").strip()
        if not text:
            return
        if not text.isdigit() or not low <= int(text) <= high:
            raise ValidationError(
                f"Enter a whole number of {what} between {low} and {high}, or leave it empty."
            )

    return check


class SecurityForm(Form):
    proof_rule = RadioField(
        "Which sign-ins reach this organization's data",
        choices=[SelectChoice(key, label) for key, label in rules.PROOF_RULE_LABELS.items()],
    )
    max_session_hours = StringField("Longest session (hours)", filters=[strip])
    elevation_minutes = StringField("Elevation window (minutes)", filters=[strip])
    invitation_domains = TextAreaField("Invite only addresses at these domains", filters=[strip])
    token_creators = RadioField(
        "Who may create API tokens for this organization",
        choices=[SelectChoice(key, label) for key, label in rules.TOKEN_CREATOR_LABELS.items()],
    )
    token_max_days = StringField("Longest API token lifetime (days)", filters=[strip])
    tokens_may_read = BooleanField(
        "Under a stricter sign-in rule, API tokens may still read (never change anything)",
        false_values=("", "false", "off", "0"),
    )

    def validate_invitation_domains(self, field: TextAreaField) -> None:
        _domains, bad = rules.parse_domains(field.data or "")
        if bad:
            raise ValidationError(
                "These are not domain names: " + ", ".join(bad[:5]) + ". Write domains like "
                "example.com, separated by spaces or new lines."
            )


def _limits() -> dict[str, int]:
    """The upper bounds: the organization's limits may only be shorter than the app's."""
    config = current_app.config
    longest_session = max(config["SESSION_ABSOLUTE_SECONDS"], config["REMEMBER_ABSOLUTE_SECONDS"])
    return {
        "hours": max(1, longest_session // 3600),
        "minutes": max(1, config["FRESH_AGE_SECONDS"] // 60),
        "days": MAX_EXPIRES_DAYS,
    }


def _form(organization: Organization, *, posted: bool) -> SecurityForm:
    limits = _limits()
    form = (
        SecurityForm()
        if posted
        else SecurityForm(
            formdata=None,
            proof_rule=rules.proof_rule(organization),
            max_session_hours=_text(organization.max_session_hours),
            elevation_minutes=_text(organization.elevation_minutes),
            invitation_domains="\n".join(rules.invitation_domains(organization)),
            token_creators=organization.token_creators or rules.EVERYONE,
            token_max_days=_text(organization.token_max_days),
            tokens_may_read=organization.tokens_may_read,
        )
    )
    form.max_session_hours.validators = [_whole_number(1, limits["hours"], "hours")]
    form.elevation_minutes.validators = [_whole_number(1, limits["minutes"], "minutes")]
    form.token_max_days.validators = [_whole_number(1, limits["days"], "days")]
    return form


def _text(number: int | None) -> str:
    return "" if number is None else str(number)


def _number(text: str | None) -> int | None:
    return int(text) if text else None


@dataclass(frozen=True)
class Change:
    setting: str
    before: str
    after: str

    def __str__(self) -> str:
        return f"{self.setting}: {self.before} → {self.after}"


def _described(organization: Organization) -> dict[str, str]:
    """Each setting in words, as the audit log and the owner's mail show a change."""
    return {
        "sign-in proofs": rules.PROOF_RULE_LABELS[rules.proof_rule(organization)].lower(),
        "longest session": f"{organization.max_session_hours} hours"
        if organization.max_session_hours
        else "the account's own limit",
        "elevation window": f"{organization.elevation_minutes} minutes"
        if organization.elevation_minutes
        else "the app's",
        "invitation domains": " ".join(rules.invitation_domains(organization)) or "any",
        "API token holders": rules.TOKEN_CREATOR_LABELS[
            organization.token_creators or rules.EVERYONE
        ].lower(),
        "longest API token": f"{organization.token_max_days} days"
        if organization.token_max_days
        else "the app's limit",
        "tokens read under a strict rule": "yes" if organization.tokens_may_read else "no",
    }


def _apply(organization: Organization, form: SecurityForm) -> None:
    """Store the form's choices. "A second factor" and "passkeys only" are the settings
    page's "requires two-factor" checkbox too, so both places always agree."""
    chosen = form.proof_rule.data or rules.ANY
    organization.requires_two_factor = chosen in (rules.SECOND_FACTOR, rules.PASSKEY)
    organization.proof_rule = chosen
    organization.max_session_hours = _number(form.max_session_hours.data)
    organization.elevation_minutes = _number(form.elevation_minutes.data)
    domains, _bad = rules.parse_domains(form.invitation_domains.data or "")
    organization.invitation_domains = " ".join(domains)
    organization.token_creators = form.token_creators.data or rules.EVERYONE
    organization.token_max_days = _number(form.token_max_days.data)
    organization.tokens_may_read = bool(form.tokens_may_read.data)


def _lockout_problem(organization: Organization, chosen_rule: str) -> str | None:
    """The owner's own session must meet the rule they choose, or the next page they open
    here would refuse them."""
    principal = require_principal()
    if rules.meets_proof_rule(chosen_rule, principal.proof):
        return None
    how = {
        rules.PASSKEY: "with a passkey",
        rules.SECOND_FACTOR: "with your second factor",
        rules.NO_MAILED: "with your password or a passkey",
    }[chosen_rule]
    return (
        f"Your own session would not meet that rule, so it would lock you out of "
        f"{organization.name}. Sign in {how} first, then choose it."
    )


@dataclass(frozen=True)
class RefusedToken:
    """A live token the policy now refuses, for the owner to see (and revoke on the
    members page): it already stopped working here."""

    holder: str
    name: str
    why: str


def _refused_tokens(organization: Organization) -> list[RefusedToken]:
    rows = get_db().execute(
        select(PersonalAccessToken, User.email, Membership.role)
        .join(User, User.id == PersonalAccessToken.user_id)
        .outerjoin(
            Membership,
            (Membership.user_id == PersonalAccessToken.user_id)
            & (Membership.organization_id == organization.id),
        )
        .where(
            PersonalAccessToken.organization_id == organization.id,
            PersonalAccessToken.revoked_at.is_(None),
            PersonalAccessToken.expires_at > utcnow(),
        )
        .order_by(User.email, PersonalAccessToken.id)
    )
    refused = []
    for token, email, role in rows:
        why = rules.existing_token_refusal(organization, role, token)
        if why is not None:
            refused.append(RefusedToken(email, token.name, why.rule))
    return refused


def _session_too_old(hours: int | None) -> str | None:
    """The owner's own session must be young enough for the limit they choose."""
    session = require_principal().session
    if hours is None or session is None:
        return None
    if utcnow() - session.created_at <= timedelta(hours=hours):
        return None
    return (
        f"You signed in more than {hours} hours ago, so this limit would shut you out at "
        "once. Sign out and in again first, then set it."
    )


def _render(
    organization: Organization,
    form: SecurityForm,
    *,
    problem: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    principal = require_principal()
    html = render_template(
        "orgs/security.html",
        organization=organization,
        form=form,
        limits=_limits(),
        may_save=has_second_factor(principal.user),
        needs_second_factor=NEEDS_SECOND_FACTOR,
        problem=problem,
        refused_tokens=_refused_tokens(organization),
    )
    return html, status


@bp.get("/<slug>/security")
@login_required
def show(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    authorize("org.security.update", organization)  # owner; fresh, with the second factor
    return _render(organization, _form(organization, posted=False))


@bp.post("/<slug>/security")
@login_required
def update(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)
    authorize("org.security.update", organization)
    principal = require_principal()
    form = _form(organization, posted=True)
    if not has_second_factor(principal.user):
        return _render(organization, form, problem=NEEDS_SECOND_FACTOR, status=422)
    if not form.validate():
        return _render(organization, form, status=422)
    problem = _lockout_problem(organization, form.proof_rule.data or rules.ANY)
    if problem is not None:
        form.proof_rule.errors = [problem]
        return _render(organization, form, status=422)
    too_old = _session_too_old(_number(form.max_session_hours.data))
    if too_old is not None:
        form.max_session_hours.errors = [too_old]
        return _render(organization, form, status=422)

    before = _described(organization)
    _apply(organization, form)
    after = _described(organization)
    changes = [
        Change(name, before[name], after[name]) for name in before if before[name] != after[name]
    ]
    get_db().commit()
    if not changes:
        flash("Nothing changed.", "info")
        return redirect(url_for("org_security.show", slug=organization.slug), code=303)
    for change in changes:
        record_audit(
            "org.security.update",
            organization_id=organization.id,
            resource_id=organization.slug,
            reason=str(change),
        )
    _mail_owner(organization, changes)
    flash("Security policy saved. It applies from the next request on.", "success")
    return redirect(url_for("org_security.show", slug=organization.slug), code=303)


def _mail_owner(organization: Organization, changes: list[Change]) -> None:
    """Tell the owner, whoever made the change: a hijacked session loosening the policy is
    exactly what they need to hear about."""
    owner = get_db().scalar(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.organization_id == organization.id, Membership.role == Role.OWNER)
    )
    if owner is None:  # pragma: no cover - every organization has exactly one owner
        return
    send_mail(
        owner.email,
        f"Security policy changed: {organization.name}",
        "org_security_changed",
        name=owner.display_name,
        organization=organization.name,
        changed_by=require_principal().user.email,
        changes=[str(change) for change in changes],
        policy_url=absolute_url(url_for("org_security.show", slug=organization.slug)),
        audit_url=absolute_url(url_for("audit.audit_log", slug=organization.slug)),
    )


def proof_rule_in_words(organization: Organization) -> str:
    return _described(organization)["sign-in proofs"]


def mail_proof_rule_change(organization: Organization, before: str) -> None:
    """The organization settings' "requires two-factor" checkbox changed the proof rule:
    the owner hears of it as of a change made on this page."""
    after = proof_rule_in_words(organization)
    if after != before:
        _mail_owner(organization, [Change("sign-in proofs", before, after)])
