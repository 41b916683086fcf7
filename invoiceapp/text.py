"""Rules for text a person types, shared by the page forms and the API's schemas.

Neither side owns them, so they live below both: a form turns the answer into a
ValidationError, a schema into a pydantic error, and the wording is the same in both.
"""

from __future__ import annotations

import unicodedata

# Embedding/override/isolate marks can make text display in another order than it is
# stored (a "Trojan source" for invoice names and CSV exports).
_BIDI_CONTROLS = frozenset(chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def visible_text_problem(text: str) -> str | None:
    """What is wrong with this name, or None. Any script, emoji or combining mark is fine.
    Control codes (NUL is refused by PostgreSQL), direction overrides and names with
    nothing visible are not."""
    if any(unicodedata.category(char) == "Cc" for char in text):
        return "Remove the control characters from this field."
    if any(char in _BIDI_CONTROLS for char in text):
        return "Remove the invisible text-direction characters from this field."
    if text and not any(unicodedata.category(char)[0] in "LNPS" for char in text):
        return "Enter a name with at least one visible character."
    return None
