#!/usr/bin/env python
"""How much does being signed in cost, served the way a deployment serves it? (`make bench`)

Two gunicorn servers with the same gunicorn.conf.py and environment as `make serve`: 2 sync
workers, production defaults (no debug, no testing), rate limits shared in a Redis of the
bench's own. One serves a plain Flask app answering "ok" (bench/bare_app.py), the other the
signed-in invoice page (/invoices/inv_7: session, principal, scoped lookup, policy,
template), once per database engine (SQLite; PostgreSQL too when
INVOICEAPP_TEST_POSTGRES_URL is set). A small threaded client measures requests per second
of each in turn, round after round, the order rotating, and prints each engine's ratio to
the bare route (goal: at least 20 %): the median of the rounds' ratios, and their spread,
since a shared machine's speed drifts between rounds more than within one.
It also counts the SQL statements the invoice page sends (Flask's test client, same
database), by what they are for (goal: the session with its user and roles, and the scoped
lookup: 2).

    .venv/bin/python bench/throughput.py [--seconds 3] [--rounds 5] [--threads 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from common import (
    ROOT,
    SERVER_ENVIRONMENT,
    Browser,
    StatementCounter,
    free_port,
    postgres_schema,
    steady_cookie,
    wait_for_port,
    wait_until_up,
)

import seed
from invoiceapp import create_app

GOAL_RATIO = 0.20
GOAL_AUTH_STATEMENTS = 2
# Rounds per run, each one measurement of the bare route and of the page on every engine;
# README's Measurements table names this number (a test checks).
ROUNDS = 5
WORKERS = 2
AUTHENTICATION_AND_SCOPE = {
    "session, its user and roles",
    "session and its user",
    "principal's roles",
    "shares",
    "scoped lookup",
}
PASSWORD = seed.DEMO_PASSWORD
APP = "invoiceapp:create_app()"
BARE_APP = "bench.bare_app:app"


def prepare(url: str) -> None:
    os.environ.setdefault("FLASK_TESTING", "true")
    app = seed.make_app({"DATABASE_URL": url, "PASSWORD_HASH_PROFILE": "CHEAPEST", "TESTING": True})
    seed.run(app, progress=False)


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A throwaway Redis for the rate limits, as a deployment with 2 workers must have."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench/throughput.py needs redis-server (shared rate limits)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def served(app: str, environment: dict[str, str], health: str, root: Path = ROOT) -> Iterator[int]:
    """gunicorn -c gunicorn.conf.py serving ``app`` on a free loopback port; yields the port.
    ``root``: the checkout whose code (and gunicorn.conf.py) serves (bench/before_after.py)."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
        **SERVER_ENVIRONMENT,
        "PYTHONPATH": str(root),
        "WEB_CONCURRENCY": str(WORKERS),
        "BIND": f"127.0.0.1:{port}",
        **environment,
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "--no-control-socket",
         "-c", "gunicorn.conf.py", app],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_up(f"http://127.0.0.1:{port}{health}", process)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
        return "session, its user and roles" if "memberships" in flat else "session and its user"
    if flat.startswith("SELECT shares."):
        return "shares"
    if flat.startswith("SELECT memberships.role, organizations.id"):
        return "principal's roles"
    if "FROM invoices" in flat and "public_id" in flat.split("WHERE", 1)[-1]:
        return "scoped lookup"
    if "FROM users" in flat:
        return "invoice's creator (template)"
    return flat[:60]


def database_urls(stack: ExitStack, folder: Path, engines: list[str]) -> dict[str, str]:
    urls = {}
    for engine in engines:
        if engine == "PostgreSQL":
            admin = os.environ["INVOICEAPP_TEST_POSTGRES_URL"]
            urls[engine] = stack.enter_context(postgres_schema(admin))
        else:
            urls[engine] = f"sqlite:///{folder / 'bench.sqlite3'}"
    return urls


def signed_in_request(port: int) -> bytes:
    browser = Browser(f"http://127.0.0.1:{port}")
    browser.sign_in("ada@acme.test", PASSWORD)
    return raw_get("/invoices/inv_7", port, steady_cookie(browser, "/invoices/inv_7"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--sqlite-only", action="store_true", help="even with PostgreSQL set")
    args = parser.parse_args()
    engines = ["SQLite"]
    if os.environ.get("INVOICEAPP_TEST_POSTGRES_URL") and not args.sqlite_only:
        engines.append("PostgreSQL")

    with tempfile.TemporaryDirectory() as name, ExitStack() as stack:
        folder = Path(name)
        urls = database_urls(stack, folder, engines)
        labels = {}
        for engine, url in urls.items():
            prepare(url)
            labels[engine] = statements_of_invoice_page(url, folder)
        limits = {"FLASK_RATELIMIT_STORAGE_URI": stack.enter_context(redis_server(folder))}
        targets: dict[str, tuple[int, bytes]] = {}
        port = stack.enter_context(served(BARE_APP, limits, "/"))
        targets["bare"] = (port, raw_get("/", port))
        for engine, url in urls.items():
            port = stack.enter_context(
                served(APP, {**limits, "FLASK_DATABASE_URL": url}, "/healthz")
            )
            targets[engine] = (port, signed_in_request(port))
        for port, request in targets.values():  # warm up every worker
            hammer(port, request, 1.0, args.threads)
        rates: dict[str, list[float]] = {name: [] for name in targets}
        problems: Counter[int] = Counter()
        names = list(targets)
        for round_number in range(args.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                rate, statuses = hammer(*targets[name], args.seconds, args.threads)
                rates[name].append(rate)
                problems.update({s: n for s, n in statuses.items() if s != 200})

    return report(args, engines, rates, labels, problems)


def report(
    args: argparse.Namespace,
    engines: list[str],
    rates: dict[str, list[float]],
    labels: dict[str, list[str]],
    problems: Counter[int],
) -> int:
    print(
        f"throughput: gunicorn, {WORKERS} sync workers, rate limits in Redis, loopback,"
        f" {args.threads} client threads, {args.rounds} rounds x {args.seconds:g} s each,"
        " order rotating; median req/s"
    )
    met = not problems
    bare = statistics.median(rates["bare"])
    print(f'  plain Flask "ok"      {bare:7.0f} req/s   (rounds: {_each(rates["bare"], ".0f")})')
    for engine in engines:
        pairs = [page / base for base, page in zip(rates["bare"], rates[engine], strict=True)]
        ratio = statistics.median(pairs)
        auth = sum(1 for label in labels[engine] if label in AUTHENTICATION_AND_SCOPE)
        verdict = "ok" if ratio >= GOAL_RATIO else f"BELOW {GOAL_RATIO:.0%}"
        met = met and ratio >= GOAL_RATIO and auth <= GOAL_AUTH_STATEMENTS
        page = statistics.median(rates[engine])
        print(
            f"  invoice, {engine:12s} {page:7.0f} req/s   (rounds: {_each(rates[engine], '.0f')})"
        )
        print(
            f"    ratio {ratio:6.1%}  {verdict}   spread {min(pairs):.1%}-{max(pairs):.1%}"
            f"   (rounds: {_each(pairs, '.1%')})"
        )
        print(f"    SQL statements per invoice page: {len(labels[engine])}", end="")
        print("".join(f"; {n} x {label}" for label, n in Counter(labels[engine]).items()))
    if problems:
        print(f"  non-200 answers: {dict(problems)}")
    return 0 if met else 1


def _each(values: list[float], spec: str) -> str:
    return ", ".join(format(value, spec) for value in values)


if __name__ == "__main__":
    raise SystemExit(main())
