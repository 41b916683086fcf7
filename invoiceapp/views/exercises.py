"""GET /exercises: the lesson's three exercises, each answer shown with a real request.

Plain forms, so every exercise works without JavaScript; static/exercises.js only keeps
the page where it is by swapping in the checked exercise instead of reloading. Progress
lives in Flask's session like the tour's (per browser, no account needed): an exercise
counts as done once every answer in it is right.

Outside demo mode the demo accounts may not exist, so answers are checked and explained,
and the page says that `make demo` shows the real requests too.
"""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from ..db import get_db
from ..exercises import (
    CLAIMS,
    CODES,
    LAYERS,
    SCENARIOS,
    SORT_ITEMS,
    STATEMENTS,
    Group,
    Observed,
    SandboxError,
    observe,
)
from ..tour import EXERCISES_KEY

bp = Blueprint("exercises", __name__)

EXERCISES = ("sort", "status", "truefalse")


def exercises_done() -> set[str]:
    """The exercises this browser has answered completely right."""
    return set(session.get(EXERCISES_KEY) or []) & set(EXERCISES)


def _mark_done(exercise: str, all_right: bool) -> None:
    if all_right and exercise not in exercises_done():
        session[EXERCISES_KEY] = sorted(exercises_done() | {exercise})


def _page(status: int = 200, **checked: object) -> ResponseReturnValue:
    return render_template(
        "pages/exercises.html",
        sort_items=SORT_ITEMS, layers=LAYERS, scenarios=SCENARIOS, codes=CODES,
        statements=STATEMENTS, claims=CLAIMS, done=exercises_done(),
        exercises=EXERCISES, live=bool(current_app.config["DEMO_MODE"]), **checked,
    ), status  # fmt: skip


def _evidence(groups: list[Group]) -> list[list[Observed]] | str:
    """The real answers, or why there are none (outside demo mode, or a changed demo)."""
    if not current_app.config["DEMO_MODE"]:
        return "In demo mode (make demo) this page sends the real request here."
    get_db().rollback()  # end this request's read, so the sandbox may write on SQLite
    try:
        return observe(groups)
    except SandboxError as error:
        return f"No live request this time: {error}. Reset the demo to bring it back."


@bp.get("/exercises")
def exercises() -> ResponseReturnValue:
    return _page()


@bp.get("/exercises/<any(sort, status, 'true-false'):part>")
def back_to_the_exercise(part: str) -> ResponseReturnValue:
    """A checked page reloaded or bookmarked (its address is the form's): back to the list."""
    return redirect(url_for("exercises.exercises", _anchor=part.replace("-", "")), code=303)


@bp.post("/exercises/sort")
def check_sort() -> ResponseReturnValue:
    """Exercise 1: each step's layer, checked against the key, with where the app does it."""
    answers = {item.key: request.form.get(item.key, "") for item in SORT_ITEMS}
    if not any(answers.values()):
        return _page(
            422, sort_answers=answers, sort_problem="Choose a layer for at least one step."
        )
    _mark_done("sort", all(answers[item.key] == item.layer for item in SORT_ITEMS))
    return _page(sort_answers=answers)


@bp.post("/exercises/status")
def check_status() -> ResponseReturnValue:
    """Exercise 2: the code picked for each scenario, next to the code the server sends."""
    answers = {s.key: request.form.get(s.key, "") for s in SCENARIOS}
    if not any(answers.values()):
        return _page(
            422, status_answers=answers, status_problem="Pick a code for at least one scenario."
        )
    evidence = _evidence([((s.probe,), ()) for s in SCENARIOS])
    _mark_done("status", all(answers[s.key] == s.answer for s in SCENARIOS))
    return _page(status_answers=answers, status_evidence=evidence)


@bp.post("/exercises/true-false")
def check_true_false() -> ResponseReturnValue:
    """Exercise 3: true or false, each with the requests that show it."""
    answers = {s.key: request.form.get(s.key, "") for s in STATEMENTS}
    if not any(answers.values()):
        return _page(422, tf_answers=answers, tf_problem="Answer at least one statement.")
    # One sandbox for all five; a statement that needs a stale session goes last.
    ordered = sorted(STATEMENTS, key=lambda statement: bool(statement.stale))
    found = _evidence([(statement.probes, statement.stale) for statement in ordered])
    evidence: dict[str, list[Observed] | str] = {
        statement.key: found if isinstance(found, str) else found[index]
        for index, statement in enumerate(ordered)
    }
    right = all(answers[s.key] == ("true" if s.answer else "false") for s in STATEMENTS)
    _mark_done("truefalse", right)
    return _page(tf_answers=answers, tf_evidence=evidence)
