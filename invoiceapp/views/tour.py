"""GET /tour: the lesson as numbered steps, each checked off by the real requests.

In demo mode it is the full guided tour: which account to use, a link that starts each
step, and a check mark once the server has really answered that way to this browser
(recorded by invoiceapp.tour, never by clicks here). Outside demo mode the demo accounts
may not exist, so the same page lists the six scenarios without accounts or marks, and
says that `make demo` runs the guided version.
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template
from flask.typing import ResponseReturnValue

from ..tour import STEPS, achieved_steps
from .exercises import EXERCISES, exercises_done

bp = Blueprint("tour", __name__)


@bp.get("/tour")
def tour() -> ResponseReturnValue:
    demo = bool(current_app.config["DEMO_MODE"])
    done = achieved_steps() if demo else set()
    return render_template(
        "pages/tour.html", steps=STEPS, done=done, guided=demo,
        exercises=EXERCISES, exercises_done=exercises_done(),
    )  # fmt: skip
