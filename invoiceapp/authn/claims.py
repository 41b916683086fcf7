"""Claiming an address: its mailbox owner takes it back from an account that never
verified it.

Anyone can sign up with someone else's address. Until the address is verified the
account is not really theirs, yet it holds the address: a sign-up with it only mails a
notice, and reset links go to verified addresses only. So whoever reads that mailbox
must always be able to claim it. Sign-up or forgot-password on an address held by an
unverified account mails a claim link (single use, RESET_TOKEN_SECONDS, only the newest
works). Opening it changes nothing; its button (a POST) does all of this at once:

- the address is verified: the mailbox just proved itself;
- the password becomes the one the claimant chose;
- every second factor goes (passkeys, authenticator app, recovery codes);
- every session ends, every API token and every pending mailed link is revoked;
- a security event records the claim.

The account itself stays (its name, organizations and invoices), now in the hands of
whoever holds the mailbox. It is the same account the address was given to.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy.orm import Session

from ..db import utcnow
from ..mail import duration_in_words, link_for, send_mail
from ..models import AccountToken, TokenPurpose, User
from .accounts import set_password
from .events import EventKind, record_event
from .factors import RemovedFactors, remove_second_factors
from .tokens import claim_token, find_usable_token, is_newest, issue_token, revoke_tokens


def send_claim_link(db: Session, user: User) -> None:
    """Mail a claim link to the unverified ``user``'s address; older claim links die.

    Commits (the token exists before the mail that names it leaves).
    """
    lifetime = current_app.config["RESET_TOKEN_SECONDS"]
    revoke_tokens(db, user.id, TokenPurpose.CLAIM_ADDRESS)
    raw = issue_token(db, user, TokenPurpose.CLAIM_ADDRESS, lifetime, email=user.email)
    db.commit()
    # Nothing the account holds goes into the mail (its name, its organizations): the
    # squatter chose all of it.
    send_mail(
        user.email,
        "Claim your email address on InvoiceApp",
        "claim_address",
        claim_url=link_for("claim_address.claim_form", token=raw),
        expires_in=duration_in_words(lifetime),
    )


def usable_claim(db: Session, raw: str) -> AccountToken | None:
    """The claim link if it still works: unused, unexpired, the newest one, for the address
    the account still has, and that address still unverified."""
    token = find_usable_token(db, raw, TokenPurpose.CLAIM_ADDRESS)
    if token is None or token.email != token.user.email or token.user.email_verified:
        return None
    return token if is_newest(db, token) else None


def claim_address(db: Session, raw: str, new_password: str) -> tuple[User, RemovedFactors] | None:
    """Use the claim link up and hand the account to the mailbox owner; None if the link
    is no longer usable (of two simultaneous claims, one wins). The caller commits."""
    if usable_claim(db, raw) is None:
        return None
    token = claim_token(db, raw, TokenPurpose.CLAIM_ADDRESS)
    if token is None:
        return None
    user = token.user
    user.email_verified_at = utcnow()
    # A new password ends every session and revokes every API token and pending link.
    set_password(db, user, new_password, keep=None)
    revoke_tokens(db, user.id, TokenPurpose.VERIFY_EMAIL, TokenPurpose.CLAIM_ADDRESS)
    removed = remove_second_factors(db, user, "by an address claim")
    record_event(db, user.id, EventKind.ADDRESS_CLAIMED)
    return user, removed
