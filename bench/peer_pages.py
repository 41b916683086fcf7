#!/usr/bin/env python
"""Ours beside two peers doing the same job the way most Flask apps do (not a test: `make bench`).

Four servers, each gunicorn with one sync worker on loopback: InvoiceApp, a plain
Flask-Login peer with a hand-written role check, a Flask-Security-Too peer (both in
bench/peers/, on Flask's signed-cookie session, the same data shape and a page padded to
ours), and a bare Flask route answering "ok". Each is signed in as Ada and asked for
/invoices/inv_7 (scoped to her organizations, one permission check) by a small threaded
client, in rounds: every round measures all four back to back, in an order that rotates,
and each figure is the median of its per-round ratios with the spread of the rounds. On
SQLite, and on PostgreSQL when INVOICEAPP_TEST_POSTGRES_URL is set.

    .venv/bin/python bench/peer_pages.py [--seconds 1.5] [--rounds 9] [--threads 4]

Needs the bench extra (pip install -c constraints.txt -e '.[bench]'). The exit code is 0:
it is a comparison, with no goal of its own.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from common import (
    ROOT,
    Browser,
    free_port,
    gunicorn,
    postgres_schema,
    quartiles,
    steady_cookie,
    wait_until_up,
)
from throughput import hammer, prepare, raw_get

import seed

PEERS = ROOT / "bench" / "peers"
POSTGRES_URL = os.environ.get("INVOICEAPP_TEST_POSTGRES_URL")
SECRET = "bench-peers-only-" + "k" * 32


@contextmanager
def peer(module: str, url: str | None, page_bytes: int) -> Iterator[str]:
    """``bench/peers/<module>.py`` under gunicorn, one sync worker; yields its base URL."""
    if url is not None:
        subprocess.run([sys.executable, str(PEERS / f"{module}.py"), "seed", url], check=True)
    port = free_port()
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "GUNICORN_"))},
        "FLASK_SECRET_KEY": SECRET,
        "FLASK_DATABASE_URL": url or "sqlite://",
        "PEER_PAGE_BYTES": str(page_bytes),
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "--workers", "1",
         "--bind", f"127.0.0.1:{port}", f"{module}:create_app()"],
        cwd=PEERS, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/healthz", process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def signed_in_cookie(base: str, path: str) -> str:
    """Sign Ada in at ``path`` (a plain form post) and return the cookie header."""
    browser = Browser(base)
    form = {"email": "ada@acme.test", "password": seed.DEMO_PASSWORD}
    status, _, body = browser.request(path, form)
    if status not in (200, 302, 303):
        raise RuntimeError(f"{base}{path}: sign-in answered {status}: {body[:200]}")
    return steady_cookie(browser, "/invoices/inv_7")


TARGETS = ("bare", "ours", "plain_login", "security_too")
LABELS = {
    "bare": "bare Flask route",
    "ours": "InvoiceApp",
    "plain_login": "Flask-Login + role check",
    "security_too": "Flask-Security-Too",
}


def measure(url_of: dict[str, str | None], args: argparse.Namespace) -> dict[str, list[float]]:
    """Requests per second of each target, round by round, the order rotating."""
    with ExitStack() as stack:
        ours = stack.enter_context(gunicorn(url_of["ours"] or "", FLASK_RATELIMIT_ENABLED="false"))
        browser = Browser(ours)
        browser.sign_in("ada@acme.test", seed.DEMO_PASSWORD)  # ours wants its CSRF token
        cookie = steady_cookie(browser, "/invoices/inv_7")
        page_bytes = len(raw_page(ours, cookie))
        bases = {"ours": ours}
        for name in ("bare", "plain_login", "security_too"):
            bases[name] = stack.enter_context(peer(name, url_of.get(name), page_bytes))
        requests = {"bare": raw_get("/", _port(bases["bare"]))}
        requests["ours"] = raw_get("/invoices/inv_7", _port(ours), cookie)
        for name, sign_in in (("plain_login", "/sign-in"), ("security_too", "/login")):
            peer_cookie = signed_in_cookie(bases[name], sign_in)
            requests[name] = raw_get("/invoices/inv_7", _port(bases[name]), peer_cookie)
        for name in TARGETS:  # warm up, and check every page answers 200
            _, statuses = hammer(_port(bases[name]), requests[name], 0.5, args.threads)
            if set(statuses) != {200}:
                raise RuntimeError(f"{name}: {dict(statuses)}")
        rates: dict[str, list[float]] = {name: [] for name in TARGETS}
        for r in range(args.rounds):
            order = TARGETS[r % len(TARGETS) :] + TARGETS[: r % len(TARGETS)]
            for name in order:
                rate, _ = hammer(_port(bases[name]), requests[name], args.seconds, args.threads)
                rates[name].append(rate)
    return rates


def raw_page(base: str, cookie: str) -> bytes:
    browser = Browser(base)
    browser.cookies = dict(part.split("=", 1) for part in cookie.split("; "))
    return browser.request("/invoices/inv_7")[2].encode()


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def report(database: str, rates: dict[str, list[float]]) -> None:
    print(f"  {database}: req/s (median of the rounds); per-round ratios, median (middle half)")
    for name in TARGETS:
        print(f"    {LABELS[name]:26s} {statistics.median(rates[name]):7.0f} req/s", end="")
        if name == "bare":
            print()
            continue
        to_bare = [a / b for a, b in zip(rates[name], rates["bare"], strict=True)]
        low, mid, high = quartiles(to_bare)
        print(f"   {mid:6.1%} of bare ({low:.1%}–{high:.1%})", end="")
        if name != "ours":
            ours = [a / b for a, b in zip(rates["ours"], rates[name], strict=True)]
            low, mid, high = quartiles(ours)
            print(f"   ours {mid:.2f}x ({low:.2f}–{high:.2f})", end="")
        print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per target per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    print(
        f"peers: gunicorn, 1 sync worker each, loopback, {args.threads} client threads,"
        f" {args.rounds} rounds of {args.seconds:g} s per target, order rotating"
    )
    with tempfile.TemporaryDirectory() as folder:
        urls = {name: f"sqlite:///{Path(folder) / f'{name}.sqlite3'}" for name in TARGETS}
        urls["bare"] = None
        prepare(urls["ours"] or "")
        report("SQLite", measure(urls, args))
    if POSTGRES_URL:
        with ExitStack() as stack:
            urls = {n: stack.enter_context(postgres_schema(POSTGRES_URL)) for n in TARGETS[1:]}
            prepare(urls["ours"])
            report("PostgreSQL", measure({**urls, "bare": None}, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
