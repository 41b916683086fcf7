"""/dev/mail: the demo's outbox, so a reset or verification link can be followed
without a real mail server. Demo mode only; everywhere else it does not exist (404).

It also lists the reset links that were asked for and never sent, because the address
was not verified: in the lesson, that missing mail is the point, so the outbox says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, abort, current_app, render_template
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.wrappers import Response

from ..authn.events import EventKind
from ..db import get_db
from ..mail import read_mail, read_outbox, text_to_html
from ..models import SecurityEvent, User
from ..path_ids import path_id_or_404

bp = Blueprint("dev_mail", __name__, url_prefix="/dev/mail")

# The viewer shows this many of the newest messages; older ones stay on disk.
SHOWN = 200


@bp.before_request
def only_in_demo_mode() -> None:
    # The outbox holds live reset links: outside the demo, nobody may read it.
    if not current_app.config["DEMO_MODE"]:
        abort(404)


@bp.after_request
def not_cached(response: Response) -> Response:
    # The pages carry working tokens; no cache should keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


@dataclass(frozen=True)
class HeldBack:
    """A mail the app was asked for and did not send."""

    to: str
    asked_at: datetime


def held_back_resets() -> list[HeldBack]:
    """Password resets asked for an unverified address, newest first.

    The reset request is recorded as a security event for any existing account; only a
    verified address gets the link (invoiceapp.views.account.recovery). An unverified address is
    a claim nobody proved, so the link is held back, and here the demo shows it as such.
    """
    rows = get_db().execute(
        select(User.email, SecurityEvent.created_at)
        .join(User, User.id == SecurityEvent.user_id)
        .where(
            SecurityEvent.kind == EventKind.RESET_REQUESTED.value,
            User.email_verified_at.is_(None),
        )
        .order_by(SecurityEvent.created_at.desc(), SecurityEvent.id.desc())
        .limit(SHOWN)
    )
    return [HeldBack(email, asked_at) for email, asked_at in rows]


@bp.get("")
def outbox() -> ResponseReturnValue:
    mails = read_outbox(current_app.config["MAIL_OUTBOX_DIR"], limit=SHOWN)
    return render_template("dev/mail_outbox.html", mails=mails, held_back=held_back_resets())


@bp.get("/<mail_id>")
def show(mail_id: str) -> ResponseReturnValue:
    mail = read_mail(current_app.config["MAIL_OUTBOX_DIR"], path_id_or_404("mail", mail_id))
    if mail is None:
        abort(404)
    # The plain text, escaped, with only its http(s) URLs made into links. The HTML part
    # is not shown: rendering mail HTML inside the site would trust whatever it contains.
    return render_template("dev/mail_show.html", mail=mail, body=text_to_html(mail.text))
