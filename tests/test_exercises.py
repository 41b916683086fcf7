"""/exercises: the lesson's three exercises, answered by the server with real requests."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conftest import make_test_app
from invoiceapp.exercises import CLAIMS, SCENARIOS, SORT_ITEMS, STATEMENTS
from invoiceapp.models import UserSession
from support import csrf_token_from, sign_in, user

ROOT = Path(__file__).resolve().parent.parent

ALL_RIGHT_SORT = {item.key: item.layer for item in SORT_ITEMS}
ALL_RIGHT_STATUS = {scenario.key: scenario.answer for scenario in SCENARIOS}
ALL_RIGHT_TF = {s.key: "true" if s.answer else "false" for s in STATEMENTS}


@pytest.fixture()
def demo(database_file: Path) -> Iterator[Flask]:
    """Demo mode with CSRF on, as `make demo` runs it."""
    app = make_test_app(database_file, DEMO_MODE=True, WTF_CSRF_ENABLED=True)
    yield app
    app.extensions["db_engine"].dispose()


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def answer(client: FlaskClient, path: str, answers: dict[str, str]) -> Any:
    token = csrf_token_from(text(client.get("/exercises")))
    return client.post(path, data={**answers, "csrf_token": token})


def answer_block(page: str, key: str) -> str:
    found = re.search(rf'data-testid="answer-{re.escape(key)}">(.*?)</fieldset>', page, re.S)
    assert found, f"no answer shown for {key}"
    return found.group(1)


def real_statuses(block: str) -> list[str]:
    return re.findall(r'data-testid="real-status">(\d{3})<', block)


def test_the_exercises_page_is_plain_forms_open_to_anyone(demo: Flask) -> None:
    page = text(demo.test_client().get("/exercises"))
    for action in ("/exercises/sort", "/exercises/status", "/exercises/true-false"):
        assert f'<form method="post" action="{action}#' in page
    assert page.count('type="radio"') == 6 * 3 + 3 * 5 + 5 * 2
    assert "0 of 3 exercises done" in page


def test_sorting_marks_each_step_and_names_where_the_app_does_it(demo: Flask) -> None:
    client = demo.test_client()
    wrong = {**ALL_RIGHT_SORT, "email": "authentication"}
    page = text(answer(client, "/exercises/sort", wrong))
    email = answer_block(page, "email")
    assert "✗ not this time" in email and "It is <strong>identification</strong>" in email
    assert "<code>invoiceapp/views/account/sign_in.py</code>, <code>sign_in()</code>" in email
    role = answer_block(page, "role")
    assert "✓ right" in role and "<code>authorize()</code>" in role
    assert "0 of 3 exercises done" in page  # one wrong: not done yet

    page = text(answer(client, "/exercises/sort", ALL_RIGHT_SORT))
    assert page.count("✓ right") == len(SORT_ITEMS)
    assert "1 of 3 exercises done" in page


def test_an_empty_answer_is_a_422_that_says_what_to_do(demo: Flask) -> None:
    response = answer(demo.test_client(), "/exercises/status", {})
    assert response.status_code == 422
    assert "Pick a code for at least one scenario." in text(response)


def test_each_status_answer_is_shown_next_to_the_real_request(demo: Flask) -> None:
    client = demo.test_client()
    answers = {**ALL_RIGHT_STATUS, "anonymous_delete": "403"}
    page = text(answer(client, "/exercises/status", answers))

    anonymous = answer_block(page, "anonymous_delete")
    assert "You said <strong>403</strong>" in anonymous and "✗ not this time" in anonymous
    assert real_statuses(anonymous) == ["401"]
    assert "WWW-Authenticate:" in anonymous
    assert 'data-testid="real-gate">Authentication<' in anonymous

    member = answer_block(page, "member_admin_only")
    assert real_statuses(member) == ["403"] and ">Authorization<" in member
    assert "as <code>linus@acme.test</code>" in member and "WWW-Authenticate" not in member

    other = answer_block(page, "other_org_invoice")
    assert real_statuses(other) == ["404"] and ">Scope<" in other


def test_the_sandbox_leaves_the_visitor_s_session_alone_and_signs_itself_out(
    demo: Flask, db: Session
) -> None:
    ada = demo.test_client()
    sign_in(ada, "ada@acme.test", csrf_token=csrf_token_from(text(ada.get("/sign-in"))))
    answer(ada, "/exercises/status", ALL_RIGHT_STATUS)
    answer(ada, "/exercises/true-false", ALL_RIGHT_TF)

    assert "Signed in as <strong><bdi>Ada Lovelace" in text(ada.get("/dashboard"))
    linus = user(db, "linus@acme.test")
    live = db.scalar(
        select(func.count()).select_from(UserSession).where(UserSession.user_id == linus.id)
    )
    assert live == 0  # every sandbox session was signed out (its row deleted)


def test_true_or_false_shows_the_evidence_for_each_statement(demo: Flask) -> None:
    page = text(answer(demo.test_client(), "/exercises/true-false", ALL_RIGHT_TF))
    assert real_statuses(answer_block(page, "email_means_authenticated")) == ["302"]
    assert real_statuses(answer_block(page, "401_fixed_by_signing_in")) == ["302", "200"]
    assert real_statuses(answer_block(page, "delete_what_you_see")) == ["200", "403"]
    stale = answer_block(page, "old_session_changes_password")
    assert real_statuses(stale) == ["302"] and "/reauthenticate?next=/account/password" in stale
    assert real_statuses(answer_block(page, "401_403_interchangeable")) == ["401", "403"]
    assert page.count("✓ right") == len(STATEMENTS)


def test_progress_is_kept_per_browser_counted_on_the_tour_and_survives_sign_in(
    demo: Flask,
) -> None:
    client = demo.test_client()
    answer(client, "/exercises/sort", ALL_RIGHT_SORT)
    answer(client, "/exercises/status", ALL_RIGHT_STATUS)
    answer(client, "/exercises/true-false", ALL_RIGHT_TF)
    assert "3 of 3 exercises done" in text(client.get("/exercises"))
    assert "3 of 3 exercises done." in text(client.get("/tour"))
    sign_in(client, "linus@acme.test", csrf_token=csrf_token_from(text(client.get("/sign-in"))))
    assert "3 of 3 exercises done." in text(client.get("/tour"))
    assert "0 of 3 exercises done." in text(demo.test_client().get("/tour"))  # another browser


def test_outside_demo_mode_answers_are_checked_without_live_requests(app: Flask) -> None:
    page = text(app.test_client().post("/exercises/status", data=ALL_RIGHT_STATUS))
    assert "✓ right" in answer_block(page, "member_admin_only")
    assert "In demo mode (make demo) this page sends the real request here." in page
    assert 'data-testid="real-status"' not in page


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_claim_of_the_lesson_names_a_test_that_exists() -> None:
    assert len(CLAIMS) >= 10
    for claim in CLAIMS:
        file, name = claim.test.split("::")
        assert (ROOT / file).is_file(), claim.test
        assert name in _test_names(ROOT / file), f"no test named {claim.test}"


def test_the_claims_table_lists_each_claim_with_its_link_and_test(demo: Flask) -> None:
    page = text(demo.test_client().get("/exercises"))
    with demo.test_request_context():
        links = {claim.test: claim.see.url() for claim in CLAIMS}
    for claim in CLAIMS:
        assert f"<code>{claim.test}</code>" in page
        assert f'<a href="{links[claim.test]}">' in page


@pytest.mark.parametrize(("path", "anchor"), [("sort", "sort"), ("true-false", "truefalse")])
def test_a_checked_page_reloaded_as_a_get_goes_back_to_its_exercise(
    demo: Flask, path: str, anchor: str
) -> None:
    response = demo.test_client().get(f"/exercises/{path}")
    assert (response.status_code, response.headers["Location"]) == (303, f"/exercises#{anchor}")
