"""Security events: what happened to an account, shown to its owner on /account/security.

An event records what, when, from which address and device. Never a password, a token
or a hash: ``detail`` is a short fixed phrase chosen by the code, not user input.
"""

from __future__ import annotations

import enum

from flask import has_request_context, request
from sqlalchemy.orm import Session

from ..db import utcnow
from ..models import SecurityEvent


class EventKind(enum.StrEnum):
    SIGNED_UP = "signed_up"
    SIGN_IN_SUCCEEDED = "sign_in_succeeded"
    SIGN_IN_FAILED = "sign_in_failed"
    SIGNED_OUT = "signed_out"
    EMAIL_VERIFIED = "email_verified"
    PASSWORD_CHANGED = "password_changed"
    RESET_REQUESTED = "reset_requested"
    RESET_USED = "reset_used"
    EMAIL_CHANGE_REQUESTED = "email_change_requested"
    EMAIL_CHANGED = "email_changed"
    SESSION_REVOKED = "session_revoked"
    ELEVATION_GRANTED = "elevation_granted"
    ELEVATION_ENDED = "elevation_ended"
    REAUTHENTICATION_FAILED = "reauthentication_failed"
    # Second factors ("something you have").
    TWO_FACTOR_ENABLED = "two_factor_enabled"
    TWO_FACTOR_DISABLED = "two_factor_disabled"
    TWO_FACTOR_FAILED = "two_factor_failed"
    TWO_FACTOR_LOCKED = "two_factor_locked"
    RECOVERY_CODE_USED = "recovery_code_used"
    RECOVERY_CODES_REGENERATED = "recovery_codes_regenerated"
    PASSKEY_ADDED = "passkey_added"
    PASSKEY_REMOVED = "passkey_removed"
    API_TOKEN_CREATED = "api_token_created"
    API_TOKEN_REVOKED = "api_token_revoked"
    ADDRESS_CLAIMED = "address_claimed"
    SIGN_IN_METHODS_CHANGED = "sign_in_methods_changed"


# What /account/security says for each kind.
DESCRIPTIONS = {
    EventKind.SIGNED_UP: "Account created",
    EventKind.SIGN_IN_SUCCEEDED: "Signed in",
    EventKind.SIGN_IN_FAILED: "Failed sign-in (wrong password)",
    EventKind.SIGNED_OUT: "Signed out",
    EventKind.EMAIL_VERIFIED: "Email address verified",
    EventKind.PASSWORD_CHANGED: "Password changed",
    EventKind.RESET_REQUESTED: "Password reset requested",
    EventKind.RESET_USED: "Password reset with an emailed link",
    EventKind.EMAIL_CHANGE_REQUESTED: "Email change requested",
    EventKind.EMAIL_CHANGED: "Email address changed",
    EventKind.SESSION_REVOKED: "Session signed out remotely",
    EventKind.ELEVATION_GRANTED: "Password confirmed for sensitive changes",
    EventKind.ELEVATION_ENDED: "Sensitive-changes mode ended",
    EventKind.REAUTHENTICATION_FAILED: "Wrong password when confirming identity",
    EventKind.TWO_FACTOR_ENABLED: "Two-factor sign-in turned on (authenticator app)",
    EventKind.TWO_FACTOR_DISABLED: "Two-factor sign-in turned off",
    EventKind.TWO_FACTOR_FAILED: "Wrong two-factor code",
    EventKind.TWO_FACTOR_LOCKED: "Authenticator codes locked after too many wrong ones",
    EventKind.RECOVERY_CODE_USED: "A recovery code was used",
    EventKind.RECOVERY_CODES_REGENERATED: "New recovery codes made (the old ones stopped working)",
    EventKind.PASSKEY_ADDED: "Passkey added",
    EventKind.PASSKEY_REMOVED: "Passkey removed",
    EventKind.API_TOKEN_CREATED: "API token created",
    EventKind.API_TOKEN_REVOKED: "API token revoked",
    EventKind.SIGN_IN_METHODS_CHANGED: "Sign-in methods changed",
    EventKind.ADDRESS_CLAIMED: (
        "Email address claimed through a mailed link: verified, new password, second "
        "factors removed, every session and API token ended"
    ),
}


def record_event(db: Session, user_id: int, kind: EventKind, detail: str = "") -> None:
    """Add an event to the caller's transaction (the caller commits)."""
    ip_address = user_agent = None
    if has_request_context():
        ip_address = request.remote_addr
        agent = "".join(c for c in request.user_agent.string if c.isprintable())
        user_agent = agent[:300] or None
    db.add(
        SecurityEvent(
            user_id=user_id,
            kind=kind.value,
            ip_address=ip_address,
            user_agent=user_agent,
            detail=detail[:200],
            created_at=utcnow(),
        )
    )
