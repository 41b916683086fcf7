"""Mutation testing of the four files that decide 401, 403 and 404 (``make mutation``).

Cosmic Ray changes one thing at a time in a file (``==`` to ``!=``, ``and`` to ``or``, a
``not`` added, ``True`` to ``False``, ...) and runs that file's tests against the change.
A mutant the tests do not notice ("survived") is a rule that no test pins down. Each file is
tested only against the test files that exercise it, fail-fast (``-x``) and one mutant at a
time, so the run stays bounded on a small shared machine (tens of minutes, not hours).

The mutants are made in a copy of the working tree under build/mutation/, never in the
tree you are working in: stopping a run midway cannot leave a mutant behind in the code.
The sessions (one SQLite file per target) stay in build/mutation/ for cr-report/cr-html.

    python scripts/mutation.py                  # all four files, from scratch
    python scripts/mutation.py policy scope     # some of them
    python scripts/mutation.py --recheck gate   # after adding tests: re-run only the survivors
    python scripts/mutation.py --all-operators  # every comparison replacement, not just ==/!=
    python scripts/mutation.py --report         # the last run's survivors again

The tests run on SQLite only: INVOICEAPP_TEST_POSTGRES_URL is dropped, since the four files
hold no engine-specific code and every mutant would otherwise run twice as long.
docs/mutation.md has the figures and the equivalent mutants.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "mutation"
TREE = OUT / "tree"


@dataclass(frozen=True)
class Target:
    module: str
    tests: tuple[str, ...]


# Each file and the tests that exercise it (fastest killers first, since -x stops early).
TARGETS: dict[str, Target] = {
    "policy": Target(
        "invoiceapp/authz/policy.py",
        ("tests/test_policy_matrix.py", "tests/test_access_matrix.py"),
    ),
    "scope": Target(
        "invoiceapp/authz/scope.py",
        ("tests/test_organization_in_the_request.py", "tests/test_no_leaks.py"),
    ),
    "enforce": Target(
        "invoiceapp/authz/enforce.py",
        (
            "tests/test_elevation.py",
            "tests/test_csrf_and_gate_order.py",
            "tests/test_second_factor_guards.py",
        ),
    ),
    "gate": Target(
        "invoiceapp/authn/gate.py",
        (
            "tests/test_csrf_and_gate_order.py",
            "tests/test_authentication.py",
            "tests/test_account_tokens.py",
        ),
    ),
}

# Plugins the bounded runs do not need; loading them costs seconds per mutant.
PYTEST = (
    "-m pytest -x -q -p no:randomly -p no:cacheprovider -p no:schemathesis "
    "-p no:hypothesispytest -p no:playwright -p no:base_url"
)

# At one operator site every replacement of ``+`` or ``|`` (by -, *, /, //, %, **, <<, >>,
# &, ^) fails the same way; the ones to + and - stand for the rest.
_REDUNDANT_OPERATOR = re.compile(
    r"core/ReplaceBinaryOperator_\w+_(Mul|Div|FloorDiv|Mod|Pow|RShift|LShift|BitOr|BitAnd|BitXor)$"
)
# A comparison is tested by its negation (== to !=, is to is not, < to >=); the other five
# replacements of the same comparison (== to <, <=, >, >=, is, ...) are skipped unless
# --all-operators, which makes a run about a third longer.
_NEGATIONS = {"Eq_NotEq", "NotEq_Eq", "Is_IsNot", "IsNot_Is", "In_NotIn", "NotIn_In",
              "Lt_GtE", "GtE_Lt", "LtE_Gt", "Gt_LtE"}  # fmt: skip
_COMPARISON = re.compile(r"core/ReplaceComparisonOperator_(\w+)$")


def _skip_reason(operator: str, all_operators: bool) -> str | None:
    if _REDUNDANT_OPERATOR.match(operator):
        return "same site as the + / - replacement"
    comparison = _COMPARISON.match(operator)
    if comparison and comparison.group(1) not in _NEGATIONS and not all_operators:
        return "a comparison is tested by its negation"
    return None


def copy_tree() -> None:
    """A fresh copy of the working tree (uncommitted tests included) to mutate."""
    if TREE.exists():
        shutil.rmtree(TREE)
    shutil.copytree(
        ROOT,
        TREE,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "instance", "__pycache__", ".*_cache", "screenshots"
        ),
    )


def test_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "INVOICEAPP_TEST_POSTGRES_URL"}
    env["PYTHONPATH"] = str(TREE)
    # No .pyc files: a mutant and the original can have the same size and timestamp.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def annotation_spans(module: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) as (row, column) of every type annotation. With ``from __future__ import
    annotations`` they are never evaluated, so a mutant inside one cannot change anything."""
    spans = []
    for node in ast.walk(ast.parse(module.read_text())):
        note: ast.expr | None = None
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            note = node.returns
        elif isinstance(node, ast.arg | ast.AnnAssign):
            note = node.annotation
        if note is not None and note.end_lineno is not None and note.end_col_offset is not None:
            spans.append(((note.lineno, note.col_offset), (note.end_lineno, note.end_col_offset)))
    return spans


def skip_noise(session: Path, module: Path, all_operators: bool) -> int:
    """Mark as skipped the mutants that test nothing (inside annotations) and those that
    repeat another one at the same place. Returns how many."""
    from cosmic_ray.work_db import use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = annotation_spans(module)
    skipped = 0
    with use_db(str(session)) as db:
        for item in db.work_items:
            mutation = item.mutations[0]
            reason = _skip_reason(mutation.operator_name, all_operators)
            where = (mutation.start_pos[0], mutation.start_pos[1])
            if any(start <= where < end for start, end in spans):
                reason = "in a type annotation (never evaluated)"
            if reason:
                db.set_result(
                    item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=reason)
                )
                skipped += 1
    return skipped


def write_config(name: str, target: Target) -> Path:
    config = OUT / f"{name}.toml"
    command = f"{sys.executable} {PYTEST} {' '.join(target.tests)}"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{target.module}"\n'
        "timeout = 300.0\n"
        "excluded-modules = []\n"
        f'test-command = "{command}"\n'
        "\n[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )
    return config


def cosmic_ray(*args: str, log: Path) -> None:
    with log.open("a") as out:
        subprocess.run(
            [str(Path(sys.executable).parent / "cosmic-ray"), *args],
            cwd=TREE,
            env=test_environment(),
            check=True,
            stdout=out,
            stderr=out,
        )


def baseline(target: Target) -> None:
    """The tests must pass on the unmutated code, or every mutant would look killed."""
    result = subprocess.run(
        [sys.executable, *PYTEST.split(), *target.tests], cwd=TREE, env=test_environment()
    )
    if result.returncode != 0:
        sys.exit(f"the tests fail without any mutant: {' '.join(target.tests)}")


def report(name: str, session: Path, seconds: float | None) -> int:
    """Print the survivors with their diffs, and a one-line count. Returns the survivors."""
    db = sqlite3.connect(session)
    rows = db.execute(
        "SELECT s.start_pos_row, s.operator_name, r.test_outcome, r.worker_outcome, r.diff "
        "FROM mutation_specs s LEFT JOIN work_results r USING (job_id) "
        "ORDER BY s.start_pos_row, s.start_pos_col, s.operator_name"
    ).fetchall()
    db.close()
    # Cosmic Ray stores its enums by name: SKIPPED, SURVIVED, KILLED.
    tested = [row for row in rows if row[3] != "SKIPPED"]
    survivors = [row for row in tested if row[2] == "SURVIVED"]
    pending = [row for row in tested if row[2] is None]
    for line, operator, _, _, diff in survivors:
        print(f"\n--- {name}: survived at line {line} ({operator})")
        changed = [
            d
            for d in (diff or "").splitlines()
            if d[:1] in "+-" and not d.startswith(("+++", "---"))
        ]
        print("\n".join(changed))
    print(
        f"\n{name}: {len(rows)} mutants, {len(rows) - len(tested)} skipped (annotations, "
        f"repeats), {len(tested)} tested, {len(survivors)} survived"
        + (f", {len(pending)} not run" if pending else "")
        + (f" ({seconds / 60:.1f} min)" if seconds is not None else "")
    )
    return len(survivors)


def run(name: str, recheck: bool, all_operators: bool) -> int:
    target = TARGETS[name]
    session = OUT / f"{name}.sqlite"
    config = write_config(name, target)
    log = OUT / f"{name}.log"
    started = time.monotonic()
    baseline(target)
    if recheck and session.exists():
        db = sqlite3.connect(session)
        db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'")
        db.commit()
        db.close()
    else:
        session.unlink(missing_ok=True)
        cosmic_ray("init", str(config), str(session), log=log)
        skip_noise(session, TREE / target.module, all_operators)
    cosmic_ray("exec", str(config), str(session), log=log)
    return report(name, session, time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (all by default)")
    parser.add_argument(
        "--recheck", action="store_true", help="re-run only the last run's survivors"
    )
    parser.add_argument("--report", action="store_true", help="print the last run's results")
    parser.add_argument(
        "--all-operators",
        action="store_true",
        help="every comparison replacement, not just negations",
    )
    args = parser.parse_args()
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(
            f"unknown target(s) {', '.join(sorted(unknown))}; choose from {', '.join(TARGETS)}"
        )
    names = args.targets or list(TARGETS)
    if args.report:
        survivors = sum(report(name, OUT / f"{name}.sqlite", None) for name in names)
        sys.exit(1 if survivors else 0)
    OUT.mkdir(parents=True, exist_ok=True)
    copy_tree()
    survivors = sum(run(name, args.recheck, args.all_operators) for name in names)
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main()
