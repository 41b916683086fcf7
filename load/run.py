#!/usr/bin/env python
"""A bounded load run on loopback, with the database pulled away in the middle (`make load`).

Starts its own throwaway PostgreSQL cluster (initdb on a free port, as the postgres user
via runuser when run as root, like .ci/run) and its own Redis, migrates and seeds, and
serves the app from two gunicorn instances (two workers each) sharing both. Seeded users
then work against the two instances at random, as a load balancer would send them:

    readers    ada, grace, hank: dashboard, lists (first and last page, a status), invoice
               pages, the API list
    creators   ada, linus (form and API), grace (API, in Globex)
    editors    ada (API PATCH, send, mark paid), linus (API PATCH of his own drafts)
    forbidden  linus and marge, members, try to delete in their own organization: 403
    strangers  hank, marge and linus reach for the other organization's invoices: 404
    sessions   grace signs in and out again and again

Meanwhile PostgreSQL is stopped (pg_ctl stop -m fast) for a few seconds and started again.
The run fails (exit code 1) on any of:

  - a 5xx other than a 503 while the database is down (plus a few seconds' grace), or any
    503 outside that window: the app must recover by itself (a dropped connection
    invalidates the pool: invoiceapp/db.py);
  - a 503 that leaks anything (a trace, a driver, SQL, the server's address) or that is
    neither the HTML page nor the JSON error body;
  - a forbidden delete that is not a 403, a cross-organization request that is not a 404;
  - any other unexpected status, or a connection the servers refused or dropped;
  - a created invoice (303 or 201) missing from the database afterwards, a refused delete
    that deleted, or the invoice and audit counts disagreeing with COUNT(*).

    .venv/bin/python load/run.py [--seconds 30] [--outage-at 10] [--outage 4]
    .venv/bin/python load/run.py --redis-outage   # also stop Redis for a while (see below)

--redis-outage stops Redis after the database has recovered and reports what rate-limited
requests (sign-in, the API) answered meanwhile; violations there count like any other.

Found by this run, for the owners of those files (2026-11-28):
  - invoiceapp/db.py: when PostgreSQL shuts down between a request's last statement and
    the teardown's ROLLBACK, db.close() raises out of Flask and gunicorn answers its own
    500 (about one run in two). Catching DBAPIError there and calling db.invalidate()
    made ten runs in a row clean.
  - Redis down: every rate-limited request (sign-in POSTs, the whole API) is a 500 (Flask-
    Limiter's default). RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True in the configuration
    made it fall back to each worker's own memory: no 5xx, limits per worker meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from common import SERVER_ENVIRONMENT, Browser, free_port, gunicorn  # noqa: E402
from sqlalchemy import create_engine, func, pool, select, text  # noqa: E402

PASSWORD = "correct-horse-battery-staple"
# What a 503 must never show (lower case), besides the database's own address.
LEAKS = ("traceback", "psycopg", "sqlalchemy", "operationalerror", "errno", "connection to server",
         "connection refused", "select ", "insert into", "postgres")  # fmt: skip
GRACE_SECONDS = 3.0  # after PostgreSQL is back, for pools to notice


# --- Services ----------------------------------------------------------------------------


def _pg_bin() -> Path:
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not candidates:
        raise SystemExit("load: needs PostgreSQL's initdb and pg_ctl (apt-get install postgresql)")
    return candidates[-1].parent


class PostgresCluster:
    """A throwaway cluster in a temp folder; stop() and start() for the outage."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.folder = folder = Path(tempfile.mkdtemp(prefix="invoiceapp-load-pg-"))
        self.data = folder / "data"
        self.port = free_port()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(folder, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C")  # fmt: skip

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [*self.as_postgres, str(self.bin / program), *args],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"),
                  "-w", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        admin = create_engine(self.url("postgres"), poolclass=pool.NullPool)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.url(name)


class RedisServer:
    def __init__(self, folder: Path) -> None:
        self.binary = shutil.which("redis-server")
        if not self.binary:
            raise SystemExit("load: needs redis-server (apt-get install redis-server)")
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            )
            if probe.stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


# --- Requests and what each may answer ---------------------------------------------------


@dataclass
class Result:
    actor: str
    kind: str
    method: str
    path: str
    expected: frozenset[int]
    started: float
    ended: float
    status: int
    body: str = ""
    content_type: str = ""
    retry_after: str | None = None
    location: str = ""


@dataclass
class Run:
    instances: tuple[str, str]
    deadline: float
    results: list[Result] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)  # public id -> organization slug
    unconfirmed_creates: int = 0
    acme_ids: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, result: Result) -> None:
        with self.lock:
            self.results.append(result)


class Actor:
    """One signed-in person: a cookie jar used against either instance at random."""

    def __init__(self, run: Run, email: str) -> None:
        self.run = run
        self.name = email.split("@")[0]
        self.browser = Browser(run.instances[0])
        self.rng = random.Random(email)
        self.browser.sign_in(email, PASSWORD)
        self.email = email
        self.csrf = self.browser.csrf_token("/invoices/new")

    def call(
        self,
        kind: str,
        path: str,
        expected: set[int],
        *,
        method: str = "GET",
        form: dict[str, str] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Result:
        self.browser.base = self.rng.choice(self.run.instances)
        if form is not None:
            form = {**form, "csrf_token": self.csrf}
        if method != "GET" and path.startswith("/api/"):
            headers = {"X-CSRFToken": self.csrf, **(headers or {})}
        started = time.monotonic()
        try:
            status, response_headers, body = self.browser.request(
                path, form, method=method, headers=headers, json_body=json_body
            )
        except OSError as error:  # refused, reset: the servers themselves must stay up
            status, response_headers, body = 0, {}, f"{type(error).__name__}: {error}"
        result = Result(
            self.name, kind, method, path, frozenset(expected), started, time.monotonic(),
            status, body, response_headers.get("Content-Type", ""),
            response_headers.get("Retry-After"), response_headers.get("Location", ""),
        )  # fmt: skip
        self.run.record(result)
        return result


NEW_INVOICE = {
    "customer": "Load Test Ltd",
    "amount": "99.50",
    "currency": "EUR",
    "issue_date": "2026-01-05",
    "due_date": "2026-02-04",
}


def create_by_form(actor: Actor, slug: str) -> str | None:
    form = {**NEW_INVOICE, "creation_key": secrets.token_urlsafe(24)}
    result = actor.call("create", "/invoices/new", {303}, method="POST", form=form)
    return _note_created(actor.run, result, slug)


def create_by_api(actor: Actor, slug: str, organization: str | None = None) -> str | None:
    path = "/api/v1/invoices" + (f"?organization={organization}" if organization else "")
    result = actor.call("create", path, {201}, method="POST", json_body=NEW_INVOICE)
    return _note_created(actor.run, result, slug)


def _note_created(run: Run, result: Result, slug: str) -> str | None:
    public_id = None
    if result.status == 303:
        match = re.search(r"/invoices/(inv_[a-z0-9]+)$", result.location)
        public_id = match.group(1) if match else None
    elif result.status == 201:
        public_id = json.loads(result.body)["id"]
    with run.lock:
        if public_id:
            run.created[public_id] = slug
            if slug == "acme":
                run.acme_ids.append(public_id)
        else:
            run.unconfirmed_creates += 1
    return public_id


def patch(actor: Actor, public_id: str) -> None:
    read = actor.call("edit", f"/api/v1/invoices/{public_id}", {200})
    if read.status != 200:
        return
    version = json.loads(read.body)["version"]
    actor.call(
        "edit", f"/api/v1/invoices/{public_id}", {200, 412}, method="PATCH",
        json_body={"customer": f"Load Test Ltd (edited by {actor.name})"},
        headers={"If-Match": f'"{version}"'},
    )  # fmt: skip


# --- What each person does, over and over until the deadline -----------------------------


def ada(actor: Actor) -> None:
    mine: list[str] = []
    while time.monotonic() < actor.run.deadline:
        step = actor.rng.random()
        if step < 0.45:
            path = actor.rng.choice(
                ["/dashboard", "/invoices", "/invoices?page=999999", "/invoices?status=paid",
                 "/api/v1/invoices", "/invoices/inv_7", "/orgs/acme/audit"]
            )  # fmt: skip
            actor.call("read", path, {200})
        elif step < 0.65:
            created = (create_by_form if actor.rng.random() < 0.5 else create_by_api)(actor, "acme")
            if created:
                mine.append(created)
        elif step < 0.8 and mine:
            patch(actor, actor.rng.choice(mine))
        elif mine:
            # Send, then mark paid: counts move between statuses under load.
            public_id = mine.pop(0)
            sent = actor.call(
                "status", f"/invoices/{public_id}/send", {303}, method="POST", form={}
            )
            if sent.status == 303:
                actor.call("status", f"/invoices/{public_id}/mark-paid", {303}, method="POST",
                           form={})  # fmt: skip


def linus(actor: Actor) -> None:
    mine: list[str] = []
    while time.monotonic() < actor.run.deadline:
        step = actor.rng.random()
        if step < 0.3:
            created = (create_by_form if actor.rng.random() < 0.5 else create_by_api)(actor, "acme")
            if created:
                mine.append(created)
        elif step < 0.5 and mine:
            patch(actor, actor.rng.choice(mine))  # his own drafts: allowed
        elif step < 0.8:
            target = actor.rng.choice(["inv_7", *actor.run.acme_ids[-20:]])
            if actor.rng.random() < 0.5:
                actor.call("forbidden", f"/invoices/{target}/delete", {403}, method="POST",
                           form={})  # fmt: skip
            else:
                actor.call("forbidden", f"/api/v1/invoices/{target}", {403}, method="DELETE",
                           headers={"If-Match": '"1"'})  # fmt: skip
        else:
            actor.call("stranger", "/invoices/inv_42", {404})


def grace(actor: Actor) -> None:
    while time.monotonic() < actor.run.deadline:
        if actor.rng.random() < 0.7:
            pages = ["/invoices", "/invoices?status=draft", "/api/v1/invoices?organization=globex"]
            actor.call("read", actor.rng.choice(pages), {200})
        else:
            create_by_api(actor, "globex", organization="globex")


def hank(actor: Actor) -> None:
    while time.monotonic() < actor.run.deadline:
        step = actor.rng.random()
        if step < 0.5:
            actor.call("read", actor.rng.choice(["/dashboard", "/invoices", "/invoices/inv_42"]),
                       {200})  # fmt: skip
        else:
            target = actor.rng.choice(["inv_7", *actor.run.acme_ids[-20:]])
            if step < 0.7:
                actor.call("stranger", f"/invoices/{target}", {404})
            elif step < 0.85:
                actor.call("stranger", f"/invoices/{target}/delete", {404}, method="POST", form={})
            else:
                actor.call("stranger", f"/api/v1/invoices/{target}", {404}, method="DELETE",
                           headers={"If-Match": '"1"'})  # fmt: skip


def marge(actor: Actor) -> None:
    while time.monotonic() < actor.run.deadline:
        if actor.rng.random() < 0.5:
            actor.call("forbidden", "/invoices/inv_42/delete", {403}, method="POST", form={})
        else:
            target = actor.rng.choice(["inv_7", *actor.run.acme_ids[-20:]])
            actor.call("stranger", f"/api/v1/invoices/{target}", {404})


def session_churn(actor: Actor) -> None:
    """Signs in and out again and again: the sign-in path, its rate limit (Redis), sessions."""
    while time.monotonic() < actor.run.deadline:
        browser = Browser(actor.rng.choice(actor.run.instances))
        started = time.monotonic()
        try:
            token = browser.csrf_token("/sign-in")
            status, headers, body = browser.request(
                "/sign-in", {"email": "grace@acme.test", "password": PASSWORD, "csrf_token": token}
            )
        except (OSError, RuntimeError) as error:
            status, headers, body = 0, {}, str(error)
        actor.run.record(
            Result("grace", "sign-in", "POST", "/sign-in", frozenset({303}), started,
                   time.monotonic(), status, body, headers.get("Content-Type", ""),
                   headers.get("Retry-After"))
        )  # fmt: skip
        if status == 303:
            actor.browser = browser
            actor.csrf = browser.csrf_token("/invoices/new")
            actor.call("read", "/dashboard", {200})
            actor.call("sign-out", "/sign-out", {303}, method="POST", form={})


ROLES: dict[str, tuple[str, Callable[[Actor], None]]] = {
    "ada": ("ada@acme.test", ada),
    "linus": ("linus@acme.test", linus),
    "grace": ("grace@acme.test", grace),
    "hank": ("hank@globex.test", hank),
    "marge": ("marge@globex.test", marge),
    "churn": ("grace@acme.test", session_churn),
}


# --- The run -----------------------------------------------------------------------------


@dataclass
class Window:
    label: str
    began: float
    ended: float = 0.0
    first_success_after: float | None = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the load")
    parser.add_argument("--outage-at", type=float, default=10.0, help="seconds into the load")
    parser.add_argument("--outage", type=float, default=4.0, help="seconds PostgreSQL is down")
    parser.add_argument("--redis-outage", action="store_true", help="also stop Redis (reported)")
    parser.add_argument("--keep", action="store_true", help="keep the servers' logs and data")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="invoiceapp-load-"))
    postgres = PostgresCluster()
    redis = RedisServer(folder)
    windows: list[Window] = []
    try:
        postgres.start()
        redis.start()
        url = postgres.create_database("invoiceapp_load")
        prepare(url, folder)
        with serving(url, redis.url, folder) as instances:
            run = Run(instances, deadline=time.monotonic() + 3600)
            actors = [(Actor(run, email), behaviour) for email, behaviour in ROLES.values()]
            run.deadline = time.monotonic() + args.seconds
            threads = [threading.Thread(target=b, args=(a,), daemon=True) for a, b in actors]
            for thread in threads:
                thread.start()
            time.sleep(args.outage_at)
            outage = Window("PostgreSQL down", time.monotonic())
            postgres.stop("fast")
            time.sleep(args.outage)
            postgres.start()
            outage.ended = time.monotonic()
            windows.append(outage)
            if args.redis_outage:
                time.sleep(max(0.0, (run.deadline - time.monotonic()) / 2 - 2))
                redis_window = Window("Redis down", time.monotonic())
                redis.stop()
                time.sleep(3)
                redis.start()
                redis_window.ended = time.monotonic()
                windows.append(redis_window)
            for thread in threads:
                thread.join(timeout=120)
        failed = report(run, windows, url, postgres.port)
        if failed:
            args.keep = True  # the servers' logs tell why
            for log in sorted(folder.glob("*.log")):
                for line in log.read_text(errors="replace").splitlines():
                    if any(m in line for m in ("Error handling request", "unhandled error")):
                        print(f"  {log.name}: {line}")
        return failed
    finally:
        redis.stop()
        try:
            postgres.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        if args.keep:
            print(f"kept: {folder} (gunicorn logs), {postgres.folder} (PostgreSQL)")
        else:
            shutil.rmtree(postgres.folder, ignore_errors=True)
            shutil.rmtree(folder, ignore_errors=True)


def prepare(url: str, folder: Path) -> None:
    import seed

    os.environ["FLASK_SECRET_KEY"] = SERVER_ENVIRONMENT["FLASK_SECRET_KEY"]
    app = seed.make_app({"DATABASE_URL": url, "MAIL_OUTBOX_DIR": str(folder / "outbox")})
    seed.run(app, invoices=200, progress=False)


@contextmanager
def serving(database_url: str, redis_url: str, folder: Path) -> Iterator[tuple[str, str]]:
    settings = {
        "FLASK_RATELIMIT_STORAGE_URI": redis_url,
        "FLASK_API_RATE_LIMIT": "100000 per minute",  # the load, not the limit, is measured
        "FLASK_MAIL_OUTBOX_DIR": str(folder / "outbox"),
    }
    with (
        gunicorn(database_url, workers=2, log=folder / "first.log", **settings) as first,
        gunicorn(database_url, workers=2, log=folder / "second.log", **settings) as second,
    ):
        yield first, second


def report(run: Run, windows: list[Window], url: str, port: int) -> int:
    violations: list[str] = []
    by_kind: dict[str, Counter[int]] = defaultdict(Counter)
    during: dict[str, Counter[int]] = defaultdict(Counter)

    def window_of(result: Result) -> Window | None:
        for window in windows:
            if result.ended >= window.began and result.started <= window.ended + GRACE_SECONDS:
                return window
        return None

    for result in run.results:
        by_kind[result.kind][result.status] += 1
        window = window_of(result)
        where = f"{result.actor} {result.method} {result.path} -> {result.status}"
        if window is not None:
            during[window.label][result.status] += 1
        if result.status == 503:
            if window is None or window.label != "PostgreSQL down":
                violations.append(f"503 outside the database outage: {where}")
            problem = _leak(result, port)
            if problem:
                violations.append(f"503 that {problem}: {where}")
        elif result.status >= 500 or result.status == 0:
            violations.append(f"{where}: {result.body[:160]!r}")
        elif result.status not in result.expected:
            violations.append(f"unexpected {where} (expected {sorted(result.expected)})")

    for window in windows:
        after = [
            r.ended for r in run.results if r.started > window.ended and r.status in r.expected
        ]
        window.first_success_after = min(after, default=None)
        if window.first_success_after is None:
            violations.append(f"nothing succeeded after {window.label} ended: no recovery")
    violations += check_database(run, url)

    total = len(run.results)
    span = max(r.ended for r in run.results) - min(r.started for r in run.results)
    print(f"load: {total} requests in {span:.0f} s over two instances ({total / span:.0f} req/s)")
    for kind, statuses in sorted(by_kind.items()):
        print(f"  {kind:10s} {sum(statuses.values()):6d}  {dict(sorted(statuses.items()))}")
    for window in windows:
        recovered = (
            f"first success {window.first_success_after - window.ended:.1f} s after restart"
            if window.first_success_after
            else "no success seen after restart"
        )
        print(
            f"  {window.label} for {window.ended - window.began:.1f} s: answers meanwhile (and"
            f" {GRACE_SECONDS:g} s after) {dict(sorted(during[window.label].items()))}; {recovered}"
        )
    print(
        f"  created: {len(run.created)} confirmed (303/201), {run.unconfirmed_creates} unanswered"
        " (503), every confirmed one checked in the database"
    )
    if violations:
        print(f"VIOLATIONS: {len(violations)}")
        for line in violations[:25]:
            print(f"  {line}")
        return 1
    print("no violations")
    return 0


def _leak(result: Result, port: int) -> str | None:
    body = result.body.lower()
    for word in (*LEAKS, f":{port}", f"port {port}"):
        if word in body:
            return f"leaks {word!r}"
    if result.path.startswith("/api/"):
        try:
            error = json.loads(result.body)["error"]
        except (ValueError, KeyError, TypeError):
            return "is not the API's JSON error body"
        if error.get("code") != "unavailable":
            return f"has code {error.get('code')!r}"
    elif "text/html" not in result.content_type:
        return f"is {result.content_type!r}, not the HTML page"
    if not result.retry_after:
        return "has no Retry-After"
    return None


def check_database(run: Run, url: str) -> list[str]:
    from invoiceapp.models import AuditCount, AuditEvent, Invoice, InvoiceCount, Organization

    problems = []
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        rows = connection.execute(
            select(Invoice.public_id, Organization.slug, Invoice.deleted_at)
            .join(Organization, Organization.id == Invoice.organization_id)
            .where(Invoice.public_id.in_(list(run.created) or [""]))
        ).all()
        found = {public_id: (slug, deleted) for public_id, slug, deleted in rows}
        for public_id, slug in run.created.items():
            if public_id not in found:
                problems.append(f"created invoice {public_id} is not in the database")
            elif found[public_id][0] != slug:
                problems.append(f"created invoice {public_id} is in {found[public_id][0]}")
        made = connection.scalar(
            select(func.count()).where(Invoice.customer.like("Load Test Ltd%"))
        )
        if not len(run.created) <= made <= len(run.created) + run.unconfirmed_creates:
            problems.append(
                f"{made} load invoices in the database for {len(run.created)} confirmed and"
                f" {run.unconfirmed_creates} unanswered creates"
            )
        refused = connection.scalar(
            select(func.count()).where(
                Invoice.public_id.in_(["inv_7", "inv_42"]), Invoice.deleted_at.is_not(None)
            )
        )
        if refused:
            problems.append("a delete that was refused (inv_7 or inv_42) deleted anyway")
        live = connection.execute(
            select(Invoice.organization_id, Invoice.status, func.count())
            .where(Invoice.deleted_at.is_(None))
            .group_by(Invoice.organization_id, Invoice.status)
        ).all()
        kept = connection.execute(
            select(InvoiceCount.organization_id, InvoiceCount.status, InvoiceCount.live_count)
        ).all()
        if {(o, s): n for o, s, n in kept if n} != {(o, s): n for o, s, n in live}:
            problems.append(f"invoice_counts {kept} != COUNT(*) {live}")
        audit = connection.scalar(
            select(func.count()).where(AuditEvent.organization_id.is_not(None))
        )
        counted = connection.scalar(select(func.coalesce(func.sum(AuditCount.records), 0)))
        if audit != counted:
            problems.append(f"audit_counts sum to {counted}, the log has {audit} records")
    engine.dispose()
    return problems


if __name__ == "__main__":
    raise SystemExit(main())
