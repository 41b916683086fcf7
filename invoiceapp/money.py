"""Amounts are integers of minor units (cents); text is parsed and printed here only."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from .models import MAX_AMOUNT_MINOR

MAX_AMOUNT_TEXT = "1,000,000,000"


# A comma is read only as a thousands separator, in groups of three ("1,250.00", the way
# format_money prints amounts). Any other comma is refused, never dropped or guessed at:
# "12,50" is twelve and a half in much of Europe, and dropping the comma made it 1250.
THOUSANDS = re.compile(r"[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?")
SEPARATORS_MESSAGE = (
    "Use a point before the cents, like 1250.50; a comma may only separate thousands, "
    "like 1,250.50."
)


class AmountError(ValueError):
    pass


def _without_thousands_separators(text: str) -> str:
    """Commas that separate thousands go; anything else with a comma (or an underscore,
    which Decimal() would quietly skip too) is refused."""
    if "_" in text or ("," in text and not THOUSANDS.fullmatch(text)):
        raise AmountError(SEPARATORS_MESSAGE)
    return text.replace(",", "")


def parse_amount(text: str) -> int:
    """``"1234.5"`` or ``"1,234.5"`` -> 123450. Positive, finite, at most two decimals, at
    most a billion. One function for the invoice form and the API alike."""
    cleaned = (text or "").strip()
    if not cleaned:
        raise AmountError("Enter an amount.")
    if len(cleaned) > 32:
        raise AmountError("That amount is too long.")
    if not cleaned.isascii():
        # Decimal() also reads Arabic-Indic and other digits; an invoice amount should not.
        raise AmountError("Use the digits 0 to 9, like 1250.00.")
    cleaned = _without_thousands_separators(cleaned)
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise AmountError("Enter the amount as a number, like 1250.00.") from None
    if not value.is_finite():
        raise AmountError("Enter a real number, not NaN or Infinity.")
    if value.as_tuple().exponent < -2:  # type: ignore[operator]
        # also catches exponents that would need rounding, such as 1e-3
        raise AmountError("Use at most two decimal places.")
    if value <= 0:
        raise AmountError("The amount must be greater than zero.")
    # Compare before multiplying: 1e999999999 * 100 would overflow the decimal context.
    if value > Decimal(MAX_AMOUNT_MINOR) / 100:
        raise AmountError(f"The amount can be at most {MAX_AMOUNT_TEXT}.")
    return int(value * 100)


def minor_to_text(amount_minor: int) -> str:
    """For form fields: 123450 -> "1234.50"."""
    return f"{Decimal(amount_minor) / 100:.2f}"


def format_money(amount_minor: int, currency: str) -> str:
    """For display: 123450, "EUR" -> "1,234.50 EUR"."""
    return f"{Decimal(amount_minor) / 100:,.2f} {currency}"
