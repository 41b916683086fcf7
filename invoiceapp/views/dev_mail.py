"""/dev/mail: the demo's outbox, so a reset or verification link can be followed
without a real mail server. Demo mode only; everywhere else it does not exist (404)."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from ..mail import read_mail, read_outbox, text_to_html
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


@bp.get("")
def outbox() -> ResponseReturnValue:
    mails = read_outbox(current_app.config["MAIL_OUTBOX_DIR"], limit=SHOWN)
    return render_template("dev/mail_outbox.html", mails=mails)


@bp.get("/<mail_id>")
def show(mail_id: str) -> ResponseReturnValue:
    mail = read_mail(current_app.config["MAIL_OUTBOX_DIR"], path_id_or_404("mail", mail_id))
    if mail is None:
        abort(404)
    # The plain text, escaped, with only its http(s) URLs made into links. The HTML part
    # is not shown: rendering mail HTML inside the site would trust whatever it contains.
    return render_template("dev/mail_show.html", mail=mail, body=text_to_html(mail.text))
