# Everything a fresh machine needs is Python 3.11+, make and git.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp

.PHONY: install demo test bench load serve clean screenshots mutation

install: $(STAMP)

# Reinstall only when the dependency declarations change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $(STAMP)

# `make demo PORT=5001` serves elsewhere; mail links (BASE_URL) and passkeys (their
# origin, on localhost) follow the port unless FLASK_BASE_URL / FLASK_WEBAUTHN_ORIGIN are set.
PORT ?= 5000
DEMO_ENV = FLASK_DEMO_MODE=true FLASK_BASE_URL=$${FLASK_BASE_URL:-http://127.0.0.1:$(PORT)} \
	FLASK_WEBAUTHN_ORIGIN=$${FLASK_WEBAUTHN_ORIGIN:-http://localhost:$(PORT)}

demo: install
	$(DEMO_ENV) $(BIN)/python seed.py
	$(DEMO_ENV) $(BIN)/flask --app invoiceapp run --host 127.0.0.1 --port $(PORT)

# Production-style: gunicorn with gunicorn.conf.py, listening on BIND (default
# 127.0.0.1:8000, behind the TLS proxy of deploy/nginx.conf). Needs FLASK_SECRET_KEY, mail
# that is sent (FLASK_MAIL_BACKEND=smtp …), and with more than one worker
# FLASK_RATELIMIT_STORAGE_URI=redis://... (or FLASK_RATELIMIT_ENABLED=false).
serve: install
	@test -n "$$FLASK_SECRET_KEY" || { echo "make serve: set FLASK_SECRET_KEY to a long random value first (python3 -c 'import secrets; print(secrets.token_hex(32))')"; exit 2; }
	$(BIN)/alembic upgrade head
	$(BIN)/gunicorn --no-control-socket -c gunicorn.conf.py "invoiceapp:create_app()"

# Lint first (a second), then mypy beside the suite: mypy works on one core for ~20 s while the
# suite's workers are still starting, and it leaves a warm cache for test_types.py. Either
# failing fails the run (the suite's result is kept until mypy is done). Every core runs
# tests (pytest-xdist); each test has its own database copy, ports and schema.
# Not --dist loadgroup/loadfile: those schedule by test id, and the schemathesis test's nine
# cases share one id, so eight of them would silently not run.
# The pytest plugins the suite uses, named rather than auto-loaded: pytest rewrites the
# asserts of every module of an auto-loaded plugin's package (about 350 modules of
# schemathesis, hypothesis and anyio) in each worker, on every run of a fresh checkout.
PYTEST_PLUGINS = -p xdist.plugin -p xdist.looponfail -p pytest_playwright.pytest_playwright \
	-p _hypothesis_pytestplugin -p schemathesis.pytest.plugin

# Python keeps compiled bytecode for make test even where PYTHONDONTWRITEBYTECODE is set (it
# is on the shared 2-core machine): without it each worker rewrote the asserts of every test
# module again on every run (collection 8.8 s -> 4.3 s per worker, warm), and every gunicorn
# and command the suite starts compiled the app again. __pycache__/ is in .gitignore.
test: export PYTHONDONTWRITEBYTECODE :=
# mypy runs inside the suite (tests/test_types.py), so a type error fails `make test`.
test: install
	$(BIN)/python -m ruff check .
	PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $(BIN)/python -m pytest $(PYTEST_PLUGINS) -n auto --dist worksteal

# Measurements, not tests: each prints what it measured in one run, and its exit code
# says whether its goals were met; all run, and make fails if any missed. Set
# INVOICEAPP_TEST_POSTGRES_URL to measure PostgreSQL too (seeding, pages, throughput);
# throughput also needs redis-server (its rate limits are shared, as deployed). Several minutes.
bench: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[bench]'
	@status=0; for name in timing_oracles seeding pages throughput slow_clients peer_pages audit_chain; do \
	  $(BIN)/python bench/$$name.py || status=1; done; exit $$status

# A bounded load run (about a minute): two gunicorn instances on a PostgreSQL cluster and
# a Redis of its own, PostgreSQL stopped for a few seconds mid-run. Needs initdb/pg_ctl
# and redis-server (.ci/run installs both). Exit code 1 on any violation.
load: install
	$(BIN)/python load/run.py

# PNGs of the key pages (desktop and phone) into docs/screenshots/, from a throwaway
# seeded database in demo mode. Needs Chromium (/usr/bin/chromium).
screenshots: install
	$(BIN)/python scripts/screenshots.py

# Mutation testing of authz/policy.py, authz/scope.py, authz/enforce.py and authn/gate.py, each
# against its own tests, one mutant at a time, in a copy under build/mutation/. Prints the
# survivors per file; exit code 1 if any. Not part of make test: about an hour on 2 cores.
# TARGETS="policy gate" for some of them; ARGS=--recheck re-runs only the last survivors.
mutation: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,mutation]'
	$(BIN)/python scripts/mutation.py $(ARGS) $(TARGETS)

clean:
	rm -rf $(VENV) .pytest_cache
