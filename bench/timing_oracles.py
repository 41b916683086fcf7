#!/usr/bin/env python
"""Does the response time tell whether an email has an account? (not a test: `make bench`)

For sign-in, forgot-password, sign-up, asking for a sign-in code or link by email and
typing a wrong code, times requests for unknown and known emails,
interleaved in one run with the production hashing profile, and prints the ratio of
the medians (unknown / known). Each ratio should stay within 0.8–1.25.

The answer is not all a client can time. Work a server does after the answer keeps its
worker busy, so the next request on the same kept-alive connection waits for it. The
keep-alive rows run gunicorn (one gthread worker, one thread, keep-alive on), post
/forgot-password and then time a GET /healthz on the same connection, for each way of
running that work (BACKGROUND_JOBS): "inline" (on the worker after the answer, as
before) and "threads" (the default). Only "threads" has to stay within 0.8–1.25.

    .venv/bin/python bench/timing_oracles.py [--rounds 15] [--keep-alive-rounds 40]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import seed  # noqa: E402
from bench.common import gunicorn  # noqa: E402
from invoiceapp import create_app  # noqa: E402
from invoiceapp.background import wait_for_jobs  # noqa: E402
from invoiceapp.db import get_db  # noqa: E402

PASSWORD = "correct-horse-battery-staple"
NEW_PASSWORD = "violet-anchor-marmalade-tundra-42"
LOW, HIGH = 0.8, 1.25


def build_app(folder: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{folder / 'bench.sqlite3'}"
    seed.migrate(url)
    app = create_app(
        {
            "SECRET_KEY": "bench-only-secret-key",
            "DATABASE_URL": url,
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": False,
            "MAIL_OUTBOX_DIR": str(folder / "outbox"),
            "MAIL_FILE_BACKEND_ALLOWED": True,  # the bench reads the outbox
            # The production profile (the default): the hash is what an oracle would see.
            "PASSWORD_HASH_PROFILE": "RFC_9106_LOW_MEMORY",
        }
    )
    with app.app_context():
        seed.seed(get_db())
    return app


def timed(call: Callable[[int], object], n: int) -> float:
    start = time.perf_counter()
    call(n)
    return time.perf_counter() - start


def measure(rounds: int, unknown: Callable[[int], object], known: Callable[[int], object]) -> float:
    unknown_times, known_times = [], []
    for n in range(rounds):  # interleaved, so drift in machine load hits both alike
        unknown_times.append(timed(unknown, n))
        known_times.append(timed(known, n))
    return statistics.median(unknown_times) / statistics.median(known_times)


def measure_returned(
    rounds: int, unknown: Callable[[int], float], known: Callable[[int], float]
) -> float:
    """Like measure(), for calls that time their own part and return the seconds."""
    unknown_times, known_times = [], []
    for n in range(rounds):
        unknown_times.append(unknown(n))
        known_times.append(known(n))
    return statistics.median(unknown_times) / statistics.median(known_times)


def next_request_after_forgot_password(
    base: str, rounds: int, unknown: str, known: str
) -> tuple[list[float], list[float]]:
    """Milliseconds a GET /healthz waits right after a /forgot-password on one kept-alive
    connection, for the unknown and the known address (interleaved)."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    waits: dict[str, list[float]] = {unknown: [], known: []}
    try:
        for n in range(rounds):
            for email in (unknown.format(n=n), known):
                connection.request("POST", "/forgot-password", f"email={email}", form)
                answer = connection.getresponse()
                answer.read()
                if answer.status != 200 or answer.getheader("Connection") == "close":
                    raise RuntimeError(f"forgot-password: {answer.status}, not kept alive")
                start = time.perf_counter()
                connection.request("GET", "/healthz")
                connection.getresponse().read()
                waits[unknown if email != known else known].append(
                    (time.perf_counter() - start) * 1000
                )
    finally:
        connection.close()
    return waits[unknown], waits[known]


def measure_keep_alive(folder: Path, rounds: int) -> dict[str, tuple[float, float]]:
    """Median wait (unknown, known) of the request after forgot-password, per BACKGROUND_JOBS."""
    url = f"sqlite:///{folder / 'keep-alive.sqlite3'}"
    seed.migrate(url)
    app = create_app(
        {
            "SECRET_KEY": "bench-only-secret-key",
            "DATABASE_URL": url,
            "MAIL_FILE_BACKEND_ALLOWED": True,  # the bench reads the outbox
        }
    )
    with app.app_context():
        seed.seed(get_db())
    app.extensions["db_engine"].dispose()
    results = {}
    for mode in ("inline", "threads"):
        environment = {
            "FLASK_BACKGROUND_JOBS": mode,
            "FLASK_WTF_CSRF_ENABLED": "false",
            "FLASK_RATELIMIT_ENABLED": "false",
            "FLASK_MAIL_OUTBOX_DIR": str(folder / f"outbox-{mode}"),
            "GUNICORN_CMD_ARGS": "--worker-class gthread --threads 1 --keep-alive 30",
        }
        with gunicorn(url, workers=1, **environment) as base:
            unknown, known = next_request_after_forgot_password(
                base, rounds, "nobody{n}@example.test", "ada@acme.test"
            )
        results[mode] = (statistics.median(unknown), statistics.median(known))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--keep-alive-rounds", type=int, default=40)
    args = parser.parse_args()
    os.environ.pop("GUNICORN_CMD_ARGS", None)
    with tempfile.TemporaryDirectory() as folder:
        app = build_app(Path(folder))
        client = app.test_client()

        def post(path: str, data: dict[str, str]) -> int:
            response = client.post(path, data=data)
            client.delete_cookie("invoiceapp_sid")  # stay anonymous for the next request
            return response.status_code

        def sign_in(email: str) -> int:
            return post("/sign-in", {"email": email, "password": "not the password at all"})

        def sign_up(email: str, n: int) -> int:
            return post(
                "/sign-up",
                {"name": "Bench Person", "email": email, "password": NEW_PASSWORD,
                 "organization_name": f"Bench {n}"},
            )  # fmt: skip

        results = {
            "sign-in (wrong password)": measure(
                args.rounds,
                lambda n: sign_in(f"nobody{n}@example.test"),
                lambda n: sign_in("ada@acme.test"),
            ),
            "forgot-password": measure(
                args.rounds,
                lambda n: post("/forgot-password", {"email": f"nobody{n}@example.test"}),
                lambda n: post("/forgot-password", {"email": "ada@acme.test"}),
            ),
            "sign-up": measure(
                args.rounds,
                lambda n: sign_up(f"new{n}@example.test", n),
                lambda n: sign_up("ada@acme.test", n),
            ),
        }

        # Sign-in by mail (issue 18): an unknown and an unverified address against a
        # verified one (the only kind that is mailed a code or a link).
        def ask(path: str, email: str) -> Callable[[int], object]:
            return lambda n: post(path, {"email": email.format(n=n)})

        for label, path in (("email code", "/sign-in/code"), ("magic link", "/sign-in/link")):
            for other, email in (
                ("unknown", "nobody{n}@example.test"),
                ("unverified", "eve@acme.test"),
            ):
                results[f"{label} ({other})"] = measure(
                    args.rounds, ask(path, email), ask(path, "ada@acme.test")
                )
        # Typing a wrong code: for an unknown address there is no code at all; for Ada a
        # live one that takes the try. Only the verify POST is timed.
        app.config["SIGN_IN_SLOWDOWN_AFTER"] = 10**6  # many wrong codes on purpose here

        def wrong_code(email: str) -> Callable[[int], float]:
            def run(n: int) -> float:
                browser = app.test_client()
                browser.post("/sign-in/code", data={"email": email.format(n=n)})
                wait_for_jobs(app)
                start = time.perf_counter()
                browser.post("/sign-in/code/verify", data={"code": "000000"})
                return time.perf_counter() - start

            return run

        results["email code, wrong code (unknown)"] = measure_returned(
            args.rounds, wrong_code("nobody{n}@example.test"), wrong_code("ada@acme.test")
        )
        app.extensions["db_engine"].dispose()
        keep_alive = measure_keep_alive(Path(folder), args.keep_alive_rounds)

    print(f"timing oracles: median time unknown / known email, {args.rounds} rounds each")
    failed = False
    for name, ratio in results.items():
        ok = LOW <= ratio <= HIGH
        failed |= not ok
        print(f"  {name:28s} {ratio:5.2f}  {'ok' if ok else f'OUTSIDE {LOW}-{HIGH}'}")
    print(
        "the next request on a kept-alive connection after forgot-password, "
        f"{args.keep_alive_rounds} rounds each (median ms, unknown / known)"
    )
    for mode, (unknown, known) in keep_alive.items():
        ratio = unknown / known
        ok = LOW <= ratio <= HIGH
        if mode == "threads":
            failed |= not ok
        verdict = "ok" if ok else f"OUTSIDE {LOW}-{HIGH}"
        if mode == "inline":
            verdict += " (before: the work on the worker; no goal)"
        print(
            f"  BACKGROUND_JOBS={mode:8s} {unknown:6.2f} / {known:6.2f} ms  {ratio:5.2f}  {verdict}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
