"""Amounts are integers of minor units (cents); text is parsed and printed here only."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from .models import MAX_AMOUNT_MINOR

MAX_AMOUNT_TEXT = "1,000,000,000"


class AmountError(ValueError):
    pass


def parse_amount(text: str) -> int:
    """``"1234.5"`` -> 123450. Positive, finite, at most two decimals, at most a billion."""
    cleaned = (text or "").strip().replace(",", "").replace("_", "")
    if not cleaned:
        raise AmountError("Enter an amount.")
    if len(cleaned) > 32:
        raise AmountError("That amount is too long.")
    if not cleaned.isascii():
        # Decimal() also reads Arabic-Indic and other digits; an invoice amount should not.
        raise AmountError("Use the digits 0 to 9, like 1250.00.")
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
