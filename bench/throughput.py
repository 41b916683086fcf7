#!/usr/bin/env python
"""How much does being signed in cost? (not a test: `make bench`)

One gunicorn worker on loopback, on a throwaway seeded SQLite file (or a PostgreSQL
schema with --postgres, using INVOICEAPP_TEST_POSTGRES_URL). A small threaded client
measures requests per second of the signed-in invoice page (/invoices/inv_7: session,
principal, scoped lookup, policy, template) and of a bare route on the same server
(/healthz) in back-to-back pairs, which goes first alternating, and prints the ratio (goal:
at least 20 %): the median of the pairs' invoice/healthz ratios with their spread, since a
shared machine's speed drifts between pairs more than within one; pairs are added (up to
--max-rounds) while the median's 95 % interval still straddles the goal.
It also counts the SQL statements the invoice page sends (Flask's test client, same
database), by what they are for (goal: session, roles and the scoped lookup in at most 4).

    .venv/bin/python bench/throughput.py [--seconds 2] [--rounds 7] [--threads 4]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from common import (
    Browser,
    StatementCounter,
    gunicorn,
    paired_ratios,
    postgres_schema,
    settled,
    spread,
)

import seed
from invoiceapp import create_app

GOAL_RATIO = 0.20
GOAL_AUTH_STATEMENTS = 4
# healthz/invoice pairs per run; README's Measurements table names this number (a test checks).
ROUNDS = 7
MAX_ROUNDS = 21
AUTHENTICATION_AND_SCOPE = {"session and its user", "principal's roles", "scoped lookup"}
PASSWORD = seed.DEMO_PASSWORD


def prepare(url: str) -> None:
    os.environ.setdefault("FLASK_TESTING", "true")
    app = seed.make_app({"DATABASE_URL": url, "PASSWORD_HASH_PROFILE": "CHEAPEST", "TESTING": True})
    seed.run(app, progress=False)


def hammer(port: int, request: bytes, seconds: float, threads: int) -> tuple[float, Counter[int]]:
    """Requests per second for ``seconds`` from ``threads`` clients, one connection per
    request (gunicorn's sync worker closes it after each response)."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        seen: Counter[int] = Counter()
        while time.perf_counter() < deadline:
            with socket.create_connection(("127.0.0.1", port)) as connection:
                connection.sendall(request)
                chunks = []
                while chunk := connection.recv(65536):
                    chunks.append(chunk)
            head = b"".join(chunks[:1])[:12]
            seen[int(head[9:12]) if head.startswith(b"HTTP/1.") else 0] += 1
        with lock:
            statuses.update(seen)

    start = time.perf_counter()
    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(statuses.values()) / (time.perf_counter() - start), statuses


def raw_get(path: str, port: int, cookie: str = "") -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def statements_of_invoice_page(url: str, folder: Path) -> list[str]:
    """What the signed-in invoice page asks the database, one label per statement."""
    app = create_app(
        {"SECRET_KEY": "bench-only", "DATABASE_URL": url, "WTF_CSRF_ENABLED": False,
         "RATELIMIT_ENABLED": False, "MAIL_OUTBOX_DIR": str(folder / "outbox"), "TESTING": True}
    )  # fmt: skip
    client = app.test_client()
    assert (
        client.post("/sign-in", data={"email": "ada@acme.test", "password": PASSWORD}).status_code
        == 303
    )
    counter = StatementCounter(app.extensions["db_engine"])
    client.get("/invoices/inv_7")
    counter.reset()
    assert client.get("/invoices/inv_7").status_code == 200
    app.extensions["db_engine"].dispose()
    return [_label(statement) for statement in counter.statements]


def _label(statement: str) -> str:
    flat = " ".join(statement.split())
    if "FROM sessions" in flat:
        return "session and its user"
    if flat.startswith("SELECT memberships.role, organizations.id"):
        return "principal's roles"
    if "FROM invoices" in flat and "public_id" in flat.split("WHERE", 1)[-1]:
        return "scoped lookup"
    if "FROM users" in flat:
        return "invoice's creator (template)"
    return flat[:60]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="healthz/invoice pairs")
    parser.add_argument(
        "--max-rounds", type=int, default=MAX_ROUNDS, help="pairs while the goal is in doubt"
    )
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--postgres", action="store_true", help="INVOICEAPP_TEST_POSTGRES_URL")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        if args.postgres:
            schema = postgres_schema(os.environ["INVOICEAPP_TEST_POSTGRES_URL"])
            url = schema.__enter__()
        else:
            schema, url = None, f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
        try:
            prepare(url)
            labels = statements_of_invoice_page(url, Path(folder))
            with gunicorn(url, FLASK_RATELIMIT_ENABLED="false") as base:
                port = int(base.rsplit(":", 1)[1])
                browser = Browser(base)
                browser.sign_in("ada@acme.test", PASSWORD)
                cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
                bare = raw_get("/healthz", port)
                page = raw_get("/invoices/inv_7", port, cookie)
                hammer(port, bare, 1.0, args.threads)  # warm up both
                hammer(port, page, 1.0, args.threads)
                rates: dict[str, list[float]] = {"healthz": [], "invoice": []}
                problems: Counter[int] = Counter()

                def rate_of(name: str, request: bytes) -> float:
                    rate, statuses = hammer(port, request, args.seconds, args.threads)
                    rates[name].append(rate)
                    problems.update({s: n for s, n in statuses.items() if s != 200})
                    return rate

                # Time per request, page / healthz: the inverse of the rates' ratio.
                slowdowns = paired_ratios(
                    lambda: 1 / rate_of("healthz", bare),
                    lambda: 1 / rate_of("invoice", page),
                    args.rounds,
                    keep_going=lambda r: not settled([1 / x for x in r], GOAL_RATIO),
                    max_rounds=args.max_rounds,
                )
        finally:
            if schema is not None:
                schema.__exit__(None, None, None)

    pairs = [1 / slowdown for slowdown in slowdowns]
    ratio = statistics.median(pairs)
    auth = sum(1 for label in labels if label in AUTHENTICATION_AND_SCOPE)
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"throughput: gunicorn, 1 sync worker, loopback, {database}, {args.threads} client"
        f" threads, {len(pairs)} pairs of {args.seconds:g} s each, interleaved; median req/s"
    )
    for name, path in (("healthz", "/healthz"), ("invoice", "/invoices/inv_7")):
        rounds = ", ".join(f"{rate:.0f}" for rate in rates[name])
        print(f"  {path:17s} {statistics.median(rates[name]):8.0f} req/s   (rounds: {rounds})")
    verdict = "ok" if ratio >= GOAL_RATIO else f"BELOW {GOAL_RATIO:.0%}"
    print(
        f"  ratio             {ratio:8.1%}   {verdict}   (median, middle half, pairs:"
        f" {spread(pairs, '{:.1%}')})"
    )
    print(f"  SQL statements per invoice page: {len(labels)}")
    for label, n in Counter(labels).items():
        print(f"    {n} x {label}")
    auth_verdict = "ok" if auth <= GOAL_AUTH_STATEMENTS else f"ABOVE {GOAL_AUTH_STATEMENTS}"
    print(f"  session + roles + scoped lookup: {auth}   {auth_verdict}")
    if problems:
        print(f"  non-200 answers: {dict(problems)}")
    return 0 if ratio >= GOAL_RATIO and auth <= GOAL_AUTH_STATEMENTS and not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
