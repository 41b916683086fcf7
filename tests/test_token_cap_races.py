"""Several requests for a new API token at once, from one account one short of the cap.

The cap (MAX_LIVE_API_TOKENS) is a count read before an insert. Without a lock, every
request in a burst reads "one left" and every one makes a token; with the user's write
lock (access_tokens.lock_user) exactly one does and the others are told why (409).
Against real gunicorn with several worker processes, on SQLite and on PostgreSQL, many
rounds; the accounts take turns so the per-account creation limit (10 an hour, in Redis,
counting only tokens made) is not what stops them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
import redis
import requests
from flask import Flask
from sqlalchemy import select, update

from invoiceapp.db import utcnow
from invoiceapp.models import PersonalAccessToken, User
from support import REDIS_SERVER, ROUNDS, all_at_once, make_token, signed_in_session

pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None, reason="needs redis-server for several gunicorn workers"
)

CAP = 20  # MAX_LIVE_API_TOKENS's default, which the served app uses
# Five at once, six rounds per account: with the one made each round, at most ten places
# of the per-account limit are ever held (10 an hour), so no request is a 429.
AT_ONCE = 5
ACCOUNTS = {
    "ada@acme.test": "acme",
    "grace@acme.test": "acme",
    "linus@acme.test": "acme",
    "hank@globex.test": "globex",
    "marge@globex.test": "globex",
}


def live(app: Flask, email: str) -> list[int]:
    with app.extensions["db_sessionmaker"]() as db:
        return list(
            db.scalars(
                select(PersonalAccessToken.id)
                .join(User, User.id == PersonalAccessToken.user_id)
                .where(User.email == email, PersonalAccessToken.revoked_at.is_(None))
                .order_by(PersonalAccessToken.id)
            )
        )


def one_short_of_the_cap(app: Flask, email: str, organization: str) -> None:
    tokens = live(app, email)
    with app.extensions["db_sessionmaker"]() as db:
        for extra in tokens[CAP - 1 :]:
            db.execute(
                update(PersonalAccessToken)
                .where(PersonalAccessToken.id == extra)
                .values(revoked_at=utcnow())
            )
        db.commit()
    for _ in range(CAP - 1 - len(tokens)):
        make_token(app, email, organization, "read")
    assert len(live(app, email)) == CAP - 1


def _create(client: requests.Session, url: str, organization: str) -> Callable[[], int]:
    form = {"name": "burst", "organization": organization, "scope": "read", "expires_days": "7"}
    return lambda: client.post(url, data=form, allow_redirects=False, timeout=30).status_code


def test_a_burst_of_token_requests_one_short_of_the_cap_makes_exactly_one(
    served: tuple[str, Flask], redis_url: str
) -> None:
    base, live_app = served
    # The engines share one Redis, and their users the same ids: start this count afresh.
    counts = redis.Redis.from_url(redis_url)
    for key in counts.scan_iter("*api-token-create*"):
        counts.delete(key)
    sessions = {email: signed_in_session(base, email) for email in ACCOUNTS}
    outcomes: Counter[tuple[int, ...]] = Counter()
    over_the_cap = 0
    for round_number in range(ROUNDS):
        email = list(ACCOUNTS)[round_number % len(ACCOUNTS)]
        organization = ACCOUNTS[email]
        one_short_of_the_cap(live_app, email, organization)
        statuses = all_at_once(
            [_create(sessions[email], base + "/account/tokens", organization)] * AT_ONCE
        )
        outcomes[tuple(sorted(statuses))] += 1
        over_the_cap += len(live(live_app, email)) > CAP
    engine = live_app.config["DATABASE_URL"].split(":")[0]
    print(f"\n{engine}: {dict(outcomes)}")
    assert over_the_cap == 0, dict(outcomes)
    assert set(outcomes) == {(201, *[409] * (AT_ONCE - 1))}, dict(outcomes)
