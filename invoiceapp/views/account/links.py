"""Pages reached through a mailed link: one answer for a dead link, and no copies kept.

Sign-up's verification link, the email-change confirmation, the reset link and the claim
link all carry a live token in their URL, so their pages share these helpers.

Opening a mailed link (GET) never changes anything (CONTRACT section 8): mail scanners and
link previews open links too, and must not spend them. The GET only checks that the link
still works and shows a button; the button's POST, to the same URL, acts.
"""

from __future__ import annotations

from flask import render_template, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response


def link_invalid(kind: str) -> ResponseReturnValue:
    """The one page for every unusable link: unknown, used, expired, mangled or foreign.

    It never says which, so the page is no oracle for which tokens once existed.
    """
    return render_template("authn/link_invalid.html", kind=kind), 400


def one_button_page(
    *, title: str, explanation: str, button: str, endpoint: str, token: str
) -> ResponseReturnValue:
    """What opening a one-step link shows: what the button does, and the button.

    The button posts (with a CSRF token) to ``endpoint``, the same URL as the link.
    """
    action = url_for(endpoint, token=token)
    return render_template(
        "authn/link_button.html", title=title, explanation=explanation, button=button, action=action
    )


def no_store(response: Response) -> Response:
    """Pages whose URL holds a live token: no cache keeps them, no Referer carries them away.

    ``same-origin``, not ``no-referrer``: over HTTPS the CSRF check wants this site's own
    Referer on the form post, and only this site ever sees it (issue 15, item 7).
    """
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    return response
