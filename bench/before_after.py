#!/usr/bin/env python
"""Did a change make the signed-in page faster? Before and after in one interleaved run.

bench/throughput.py's measurement (gunicorn with gunicorn.conf.py, 2 sync workers,
production defaults, rate limits in a Redis of its own, a plain Flask "ok" route beside
it), with each engine's invoice page served twice from the same database: once from this
checkout, once from another one holding the code before the change. Every round measures
the bare route and all the pages back to back, the order rotating, so a shared machine's
drift touches before and after alike; each figure is the median of the rounds' ratios to
the bare route, with their spread, and "after / before" the median of the rounds' ratios.

    git worktree add /tmp/before <commit>      # or: git archive <commit> | tar -x -C DIR
    .venv/bin/python bench/before_after.py --before /tmp/before [--rounds 7] [--seconds 3]

Not part of `make bench`: it needs the other checkout. The exit code is 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from common import ROOT
from throughput import (
    APP,
    BARE_APP,
    WORKERS,
    database_urls,
    hammer,
    prepare,
    raw_get,
    redis_server,
    served,
    signed_in_request,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout of the old code")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    engines = ["SQLite"]
    if os.environ.get("INVOICEAPP_TEST_POSTGRES_URL"):
        engines.append("PostgreSQL")
    checkouts = {"before": args.before.resolve(), "after": ROOT}

    with tempfile.TemporaryDirectory() as name, ExitStack() as stack:
        folder = Path(name)
        urls = database_urls(stack, folder, engines)
        for url in urls.values():
            prepare(url)
        limits = {"FLASK_RATELIMIT_STORAGE_URI": stack.enter_context(redis_server(folder))}
        targets: dict[str, tuple[int, bytes]] = {}
        port = stack.enter_context(served(BARE_APP, limits, "/"))
        targets["bare"] = (port, raw_get("/", port))
        for engine, url in urls.items():
            for when, root in checkouts.items():
                environment = {**limits, "FLASK_DATABASE_URL": url}
                port = stack.enter_context(served(APP, environment, "/healthz", root))
                targets[f"{engine}, {when}"] = (port, signed_in_request(port))
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

    print(
        f"before/after: gunicorn, {WORKERS} sync workers, rate limits in Redis, loopback,"
        f" {args.threads} client threads, {args.rounds} rounds x {args.seconds:g} s, order"
        f" rotating; before = {checkouts['before']}"
    )
    bare = rates["bare"]
    print(f'  plain Flask "ok"        {statistics.median(bare):7.0f} req/s')
    for engine in engines:
        before, after = rates[f"{engine}, before"], rates[f"{engine}, after"]
        for when, page in (("before", before), ("after", after)):
            pairs = [p / b for p, b in zip(page, bare, strict=True)]
            print(
                f"  {engine:10s} {when:6s}   {statistics.median(page):7.0f} req/s   ratio"
                f" {statistics.median(pairs):6.1%} (spread {min(pairs):.1%}-{max(pairs):.1%})"
            )
        gains = [a / b for a, b in zip(after, before, strict=True)]
        print(
            f"  {engine:10s} after / before {statistics.median(gains):.2f}"
            f" (rounds {min(gains):.2f}-{max(gains):.2f})"
        )
    if problems:
        print(f"  non-200 answers: {dict(problems)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
