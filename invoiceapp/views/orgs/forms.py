"""The organization pages' forms.

Forms read only their own fields, so an ``organization_id``, ``owner`` or ``plan``
posted alongside changes nothing (mass assignment).
"""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select
from wtforms import BooleanField, SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # new in WTForms 3.3; types-WTForms is 3.2
from wtforms.validators import DataRequired, Length

from ...authn.emails import MAX_EMAIL_LENGTH, valid_new_email
from ...authz.policy import GRANTABLE_ACTIONS
from ...authz.roles import MAX_NAME_LENGTH as MAX_ROLE_NAME_LENGTH
from ...db import get_db
from ...forms import Form, no_control_characters, strip
from ...models import CustomRole, Membership, Organization, Plan, Role, User
from ...principal import require_principal

MAX_NAME_LENGTH = 100
# Roles a form may hand out. The owner changes only by a transfer.
ASSIGNABLE_ROLES = [Role.MEMBER.value, Role.ADMIN.value]
PLANS = [Plan.FREE.value, Plan.PRO.value]
# Ticked on a new custom role's form: seeing the organization, its members and invoices,
# and leaving it. The owner may untick them; a role holds exactly what is ticked.
NEW_ROLE_DEFAULTS = ["invoice.read", "org.read", "org.leave", "member.read"]


def role_choices(custom_roles: list[CustomRole]) -> list[tuple[str, str]]:
    """The roles a form may hand out: member, admin and the organization's own roles."""
    return [(role, role) for role in ASSIGNABLE_ROLES] + [
        (role.key, role.name) for role in custom_roles
    ]


class NewOrganizationForm(Form):
    name = StringField(
        "Organization name",
        filters=[strip],
        validators=[
            DataRequired("Enter the organization's name."),
            Length(max=MAX_NAME_LENGTH, message=f"Use at most {MAX_NAME_LENGTH} characters."),
            no_control_characters,
        ],
        render_kw={"autocomplete": "organization", "autofocus": True},
    )


class SettingsForm(Form):
    # A checkbox posts "on" when ticked and nothing when not.
    invoice_duplication = BooleanField(
        "Members may duplicate invoices", false_values=("", "false", "off", "0")
    )
    requires_two_factor = BooleanField(
        "This organization requires two-factor", false_values=("", "false", "off", "0")
    )


class InviteForm(Form):
    email = StringField(
        "Email address",
        validators=[DataRequired("Enter the address to invite."), valid_new_email],
        render_kw={"type": "email", "autocomplete": "off", "maxlength": MAX_EMAIL_LENGTH},
    )
    role = SelectField("Role", choices=ASSIGNABLE_ROLES, default=Role.MEMBER.value)  # type: ignore[arg-type]  # plain values are choices too; the stubs want pairs


class RoleForm(Form):
    role = SelectField("Role", choices=ASSIGNABLE_ROLES)  # type: ignore[arg-type]  # plain values are choices too; the stubs want pairs


RoleFormT = TypeVar("RoleFormT", InviteForm, RoleForm)


def with_roles(form: RoleFormT, custom_roles: list[CustomRole]) -> RoleFormT:
    """``form`` offering member, admin and this organization's custom roles."""
    form.role.choices = [SelectChoice(value, label) for value, label in role_choices(custom_roles)]
    return form


class CustomRoleForm(Form):
    name = StringField(
        "Role name",
        filters=[strip],
        validators=[
            DataRequired("Enter the role's name."),
            Length(
                max=MAX_ROLE_NAME_LENGTH,
                message=f"Use at most {MAX_ROLE_NAME_LENGTH} characters.",
            ),
            no_control_characters,
        ],
        render_kw={"maxlength": MAX_ROLE_NAME_LENGTH},
    )
    # Checked against the policy's list by the view (authz.roles.actions_problem).
    actions = SelectMultipleField(
        "Actions",
        choices=[SelectChoice(action, action) for action in GRANTABLE_ACTIONS],
        validate_choice=False,
    )


class TransferForm(Form):
    # Choices are the other members, set per request.
    user_id = SelectField("New owner", coerce=int, choices=[])


class BillingForm(Form):
    plan = SelectField("Plan", choices=PLANS)  # type: ignore[arg-type]  # plain values are choices too; the stubs want pairs


def _transfer_candidates(organization: Organization) -> list[SelectChoice]:
    me = require_principal().user.id
    rows = get_db().execute(
        select(User.id, User.display_name, User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.organization_id == organization.id, User.id != me)
        .order_by(User.display_name, User.id)
    )
    return [SelectChoice(user_id, f"{name} ({email})") for user_id, name, email in rows]


def new_transfer_form(organization: Organization, *, posted: bool = False) -> TransferForm:
    form = TransferForm() if posted else TransferForm(formdata=None)
    form.user_id.choices = _transfer_candidates(organization)
    return form
