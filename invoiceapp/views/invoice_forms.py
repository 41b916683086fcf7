"""The invoice form: every rule the schema enforces is also explained beside its field.

It has no ``status`` field on purpose. The status is an input to the policy (a member may
edit only drafts, nobody edits a paid invoice), so letting a form set it would let a
member create an invoice directly as ``paid``. Status changes are actions of their own
(send, mark paid, void), each asked of the policy. Nor does it have organization, author
or number: the view sets those, and a posted value for them is simply never read. The one
exception is the new-invoice form's hidden ``organization`` (a slug): the organization the
form was rendered for, which the view looks up among the principal's own (404 otherwise)
and asks the policy about, like any other input (views.invoices).
"""

from __future__ import annotations

from typing import Any

from wtforms import DateField, HiddenField, SelectField, StringField
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    Optional,
    Regexp,
    ValidationError,
)

from ..forms import Form, strip
from ..invoicing import CREATION_KEY
from ..models import CURRENCIES, InvoiceStatus
from ..money import AmountError, parse_amount
from ..text import visible_text_problem

STATUSES = [status.value for status in InvoiceStatus]


def plain_visible_text(_form: Any, field: Any) -> None:
    """The form's side of invoiceapp.text: the API's schema asks the same question."""
    problem = visible_text_problem(field.data or "")
    if problem:
        raise ValidationError(problem)


class InvoiceForm(Form):
    customer = StringField(
        "Customer",
        filters=[strip],
        validators=[
            DataRequired("Enter the customer's name."),
            Length(max=200, message="Keep the customer's name to 200 characters or fewer."),
            plain_visible_text,
        ],
    )
    amount = StringField(
        "Amount",
        filters=[strip],
        validators=[InputRequired("Enter an amount.")],  # parse_amount checks the rest
        render_kw={"inputmode": "decimal", "placeholder": "1250.00"},
    )
    currency = SelectField(
        "Currency",
        choices=list(CURRENCIES),  # type: ignore[arg-type]  # plain values are choices too; the stubs want pairs
        validate_choice=True,
    )
    issue_date = DateField("Issue date", validators=[InputRequired("Enter the issue date.")])
    due_date = DateField("Due date", validators=[InputRequired("Enter the due date.")])

    # A one-time key in the new-invoice form: posting the same form twice (a double click,
    # a retried request) finds the invoice the first post made instead of making another.
    creation_key = HiddenField(
        validators=[
            Optional(),
            Regexp(CREATION_KEY, message="This form is damaged. Reload the page."),
        ]
    )

    # The edit form carries the version of the invoice it was filled from. Saving checks
    # it is still the current one, so a change someone else saved meanwhile is never
    # silently overwritten (a 409 with both versions instead; see views.invoices.update).
    version = HiddenField(
        validators=[
            Optional(),
            Regexp(r"^[0-9]{1,9}$", message="This form is damaged. Reload the page."),
        ]
    )

    amount_minor: int | None = None

    def version_seen(self) -> int | None:
        """The version the form was filled from; None when a post had no version field."""
        return int(self.version.data) if self.version.data else None

    def validate_amount(self, field: Any) -> None:
        try:
            self.amount_minor = parse_amount(field.data or "")
        except AmountError as error:
            raise ValidationError(str(error)) from None

    def column_values(self) -> dict[str, Any]:
        """The validated values as invoice columns, for invoicing.create_invoice/save_changes.

        Only the fields declared above: whatever else was posted (status, organization_id,
        created_by_id, number…) is never read, so it cannot be mass-assigned.
        """
        assert self.amount_minor is not None, "column_values() before validate()"
        return {
            "customer": self.customer.data,
            "amount_minor": self.amount_minor,
            "currency": self.currency.data,
            "issue_date": self.issue_date.data,
            "due_date": self.due_date.data,
        }

    def validate_due_date(self, field: Any) -> None:
        if self.issue_date.data and field.data and field.data < self.issue_date.data:
            raise ValidationError("The due date cannot be before the issue date.")


class DeleteInvoiceForm(Form):
    """The delete button's form: the version of the invoice the confirmation page showed.

    Deleting checks it is still the current one (invoicing.soft_delete), as saving an
    edit does, so an invoice changed after the page was opened is not deleted unseen.
    """

    version = HiddenField(
        validators=[
            Optional(),
            Regexp(r"^[0-9]{1,9}$", message="This form is damaged. Reload the page."),
        ]
    )

    def version_seen(self) -> int | None:
        """The version the page showed; None when a post had no version field."""
        return int(self.version.data) if self.version.data else None
