"""README's walk, run as written: the browser steps, then the curl and API blocks taken
from README.md itself, against a server started the way `make demo` starts it. Twice in a
row, on the same database: the walk must leave behind nothing that breaks a second walk.

A README edit that breaks the walk fails here. Each curl command in the two blocks must
print the status that the comment above it names (a comment with no status keeps the one
before it), so a new command without a promised status fails too.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from conftest import make_test_app
from invoiceapp.cli import policy_markdown
from invoiceapp.tour import STEPS
from seed import DEMO_PASSWORD
from support import free_port, sign_in

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
STATUS = re.compile(r"\b([1-5]\d\d)\b")
MARKER = "@@readme-command "


# ---------------------------------------------------------------------------
# README.md, read as data
# ---------------------------------------------------------------------------


def readme_section(heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level
    (a shell comment inside a code block is no heading)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    level = len(heading.split(" ", 1)[0])
    start = lines.index(heading) + 1
    in_code = False
    for end in range(start, len(lines)):
        line = lines[end]
        in_code = in_code != line.startswith("```")
        if not in_code and re.match(rf"#{{1,{level}}} ", line):
            return "\n".join(lines[start:end]) + "\n"
    return "\n".join(lines[start:]) + "\n"


def first_sh_block(heading: str) -> str:
    match = re.search(r"```sh\n(.*?)```", readme_section(heading), re.S)
    assert match, f"README: no ```sh block under {heading!r}"
    return match.group(1)


@dataclass(frozen=True)
class Command:
    text: str  # one shell command, continuation lines joined
    expected: str | None  # the status its comment promises; None for set-up lines


def commands_of(block: str) -> list[Command]:
    """The block's commands; a curl command inherits the status of the comment above."""
    commands: list[Command] = []
    expected: str | None = None
    lines = iter(block.splitlines())
    for line in lines:
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines).strip()
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            found = STATUS.search(stripped)
            expected = found.group(1) if found else expected
            continue
        commands.append(Command(line, expected if stripped.startswith("curl ") else None))
    return commands


def printed_status(output: str) -> str | None:
    """What a command printed as its status: curl -i's status line, or a -w code."""
    found = re.search(r"^HTTP/\S+ (\d{3})", output, re.M) or re.search(r"^(\d{3})\b", output, re.M)
    return found.group(1) if found else None


def run_block(block: str, base: str, token: str = "") -> list[tuple[Command, str]]:
    """Run the README block in one bash, ``B`` and ``T`` pointing at this server and token."""
    script, checked = ["set -u"], []
    for command in commands_of(block):
        text = command.text
        if re.match(r"^B=", text):
            text = f"B={shlex.quote(base)}"
        elif re.match(r"^T=", text):
            text = f"T={shlex.quote(token)}"
        if command.expected is not None or text.lstrip().startswith("curl "):
            # A fresh line first: a JSON body ends without one.
            script.append(f"echo; echo {shlex.quote(MARKER + str(len(checked)))}")
            checked.append(command)
        script.append(text)
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "B": base},  # the API block reuses the curl block's B
    )
    assert result.returncode == 0, result.stderr
    outputs = re.split(r"^" + re.escape(MARKER) + r"\d+\n", result.stdout, flags=re.M)[1:]
    assert len(outputs) == len(checked), result.stdout
    return list(zip(checked, outputs, strict=True))


# ---------------------------------------------------------------------------
# The server, as `make demo PORT=…` starts it
# ---------------------------------------------------------------------------


def demo_recipe(port: int) -> list[str]:
    """The seed and serve lines of `make demo PORT=port`, with this interpreter's tools."""
    # Under `make test` the outer make's flags (jobserver and all) are no business of this one.
    environment = {
        k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    }
    printed = subprocess.run(
        ["make", "-n", "demo", f"PORT={port}"],
        cwd=ROOT, env=environment, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    bin_dir = Path(sys.executable).parent
    lines = [line for line in printed.splitlines() if "FLASK_DEMO_MODE=true" in line]
    assert len(lines) == 2, printed  # seed.py, then flask run
    return [line.replace(".venv/bin/", f"{bin_dir}/") for line in lines]


@dataclass(frozen=True)
class Demo:
    base: str
    outbox: Path
    seed_output: str


@pytest.fixture()
def demo(tmp_path: Path) -> Iterator[Demo]:
    port = free_port()
    seed_line, serve_line = demo_recipe(port)
    environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith("FLASK_")},
        "FLASK_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "FLASK_MAIL_OUTBOX_DIR": str(tmp_path / "outbox"),
        "FLASK_SECRET_KEY": "readme-walk-" + "k" * 32,  # instance/secret_key stays untouched
        "PYTHONPATH": str(ROOT),
    }
    seeded = subprocess.run(
        ["bash", "-c", seed_line], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    assert seeded.returncode == 0, seeded.stderr
    server = subprocess.Popen(
        ["bash", "-c", "exec env " + serve_line], cwd=ROOT, env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                if requests.get(base + "/healthz", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the demo server did not come up"
                time.sleep(0.2)
        yield Demo(base, tmp_path / "outbox", seeded.stdout)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert f"Running on {base}" in output  # the URL it prints follows the port


# ---------------------------------------------------------------------------
# A browser without a browser: cookies, and forms posted with their hidden fields
# ---------------------------------------------------------------------------


class _Forms(HTMLParser):
    """Each form's action with its hidden fields (the CSRF token, next, and so on)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.forms.append((attributes.get("action", ""), {}))
        elif tag == "input" and attributes.get("type") == "hidden" and self.forms:
            self.forms[-1][1][attributes.get("name", "")] = attributes.get("value", "")


class Browser:
    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.base + path, allow_redirects=False, timeout=30)

    def submit(self, page: str, action: str, **fields: str) -> requests.Response:
        """Open ``page``, then post its form for ``action`` as a person pressing it would."""
        parser = _Forms()
        parser.feed(self.get(page).text)
        hidden = next((f for a, f in parser.forms if a == action), None)
        assert hidden is not None, f"{page} has no form posting to {action}"
        return self.http.post(
            self.base + action, data={**hidden, **fields}, allow_redirects=False, timeout=30
        )

    def sign_in(self, email: str, next_path: str = "") -> requests.Response:
        page = "/sign-in" + (f"?next={next_path}" if next_path else "")
        response = self.submit(page, "/sign-in", email=email, password=DEMO_PASSWORD)
        assert response.status_code == 303, f"sign-in as {email}: {response.status_code}"
        return response

    def sign_out(self) -> None:
        assert self.submit("/dashboard", "/sign-out").status_code == 303


def wait_for(condition_met: object, what: str) -> None:
    """Poll for work the server does after answering (the reset request runs on close)."""
    deadline = time.monotonic() + 10
    while not condition_met():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def walk_the_browser_steps(base: str, outbox: Path) -> Browser:
    """README "In the browser", steps 1 to 12, checking what each promises."""
    browser = Browser(base)
    # 1. Signed out, a page that needs a principal: the page form of a 401.
    response = browser.get("/invoices")
    assert (response.status_code, response.headers["Location"]) == (302, "/sign-in?next=/invoices")
    assert "page-friendly 401" in browser.get(response.headers["Location"]).text
    # 2. Linus signs in and is sent back.
    assert browser.sign_in("linus@acme.test", "/invoices").headers["Location"] == "/invoices"
    # 3. The list names inv_7 as the README does; its page offers no delete.
    listing = browser.get("/invoices").text
    assert re.search(
        r'>#0005</a></td>\s*<td data-label="Reference"><code class="ref">inv_7</code>', listing
    )
    assert "Delete this invoice" not in browser.get("/invoices/inv_7").text
    # 4. The lab shows the hidden delete; pressing it is a 403 naming the action.
    browser.submit("/invoices/inv_7", "/demo/lab", show="on")
    assert 'href="/invoices/inv_7/delete"' in browser.get("/invoices/inv_7").text
    refused = browser.get("/invoices/inv_7/delete")
    assert refused.status_code == 403 and "invoice.delete" in refused.text
    # 5. Another organization's invoice is a 404, like one that never existed.
    assert browser.get("/invoices/inv_42").status_code == 404
    assert browser.get("/invoices/inv_999999").status_code == 404
    # 6. The plan lets a member export, and still not read billing.
    assert browser.get("/invoices/export.csv").status_code == 200
    assert browser.get("/orgs/acme/billing").status_code == 403
    # 7. Ada deletes a draft of her own; inv_7 stays for the blocks.
    browser.sign_out()
    browser.sign_in("ada@acme.test")
    created = browser.submit(
        "/invoices/new", "/invoices/new", customer="README walk", amount="10.00",
        currency="EUR", status="draft", issue_date="2026-01-01", due_date="2026-01-31",
    )  # fmt: skip
    assert created.status_code == 303, created.text
    draft = created.headers["Location"].split("?")[0]
    assert 'href="' + draft + '/delete"' in browser.get(draft).text
    assert browser.submit(draft + "/delete", draft + "/delete").status_code == 303
    assert browser.get(draft).status_code == 404
    audit = browser.get("/orgs/acme/audit").text
    assert draft.removeprefix("/invoices/") in audit and ">inv_7<" in audit
    # 8. End elevation, then the plan change asks for the password first.
    billing = "/orgs/acme/billing"
    assert browser.submit(billing, "/account/elevation/end").status_code == 303
    asked = browser.submit(billing, billing, plan="pro")
    assert asked.headers["Location"].startswith("/reauthenticate?next=/orgs/acme/billing")
    back = browser.submit(asked.headers["Location"], "/reauthenticate", password=DEMO_PASSWORD)
    assert back.headers["Location"] == billing
    changed = browser.submit(billing, billing, plan="pro")
    assert changed.status_code in (302, 303) and not changed.headers["Location"].startswith(
        "/reauthenticate"
    )
    assert "Nothing changed" in browser.get(billing).text
    # 9. Grace: admin in Acme, member in Globex.
    browser.sign_out()
    browser.sign_in("grace@acme.test")
    assert browser.submit("/invoices", "/orgs/switch", organization="globex").status_code == 303
    assert "member of <bdi>Globex Corporation</bdi>" in browser.get("/invoices").text
    # 10. Eve's reset: the page answers as for anyone; the outbox says it was held back.
    browser.sign_out()
    answered = browser.submit("/forgot-password", "/forgot-password", email="eve@acme.test")
    assert answered.status_code == 200
    held_back = re.compile(r"<td>eve@acme\.test</td>\s*<td>a password reset link</td>")
    wait_for(lambda: held_back.search(browser.get("/dev/mail").text), "no held-back reset")
    to_eve = [p.read_text() for p in outbox.glob("*.eml") if "eve@acme.test" in p.read_text()]
    assert not any("/reset-password/" in mail for mail in to_eve)  # a claim link at most
    # 11. Tess: a second step after the password.
    signed = browser.sign_in("tess@acme.test")
    assert signed.headers["Location"].startswith("/sign-in/two-factor")
    # 12. The tour counts every step as done.
    assert f"{len(STEPS)} of {len(STEPS)} done" in browser.get("/tour").text
    return browser


def linus_token(base: str) -> str:
    """README: signed in as Linus, create a token at /account/tokens."""
    browser = Browser(base)
    browser.sign_in("linus@acme.test")
    made = browser.submit(
        "/account/tokens", "/account/tokens",
        name="README walk", organization="acme", scope="write", expires_days="1",
    )  # fmt: skip
    assert made.status_code == 201  # the page that shows the new token, once
    found = re.search(r'data-testid="token-value">(ia_pat_[A-Za-z0-9_-]+)<', made.text)
    assert found, made.text
    return found.group(1)


# ---------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------


def test_the_readme_walk_runs_as_written_twice_in_a_row(demo: Demo) -> None:
    assert f"{demo.base}/tour" in demo.seed_output  # seed.py prints the demo's own URL
    curl_block = first_sh_block("### With curl")
    api_block = first_sh_block("### With the API")
    for walk in (1, 2):
        walk_the_browser_steps(demo.base, demo.outbox)
        for block, token in ((curl_block, ""), (api_block, linus_token(demo.base))):
            for command, output in run_block(block, demo.base, token):
                assert command.expected, f"README: no status promised above {command.text!r}"
                assert printed_status(output) == command.expected, (
                    f"walk {walk}: {command.text!r} printed {output!r}, "
                    f"README promises {command.expected}"
                )
    assert_links_follow_the_port(demo)


def assert_links_follow_the_port(demo: Demo) -> None:
    """`make demo PORT=…`: mail links and the passkeys' origin name the port served."""
    port = demo.base.rsplit(":", 1)[1]
    browser = Browser(demo.base)
    assert f"http://localhost:{port}" in browser.get("/sign-in").text  # passkeys live there
    browser.submit("/forgot-password", "/forgot-password", email="ada@acme.test")
    wait_for(lambda: any("ada@acme.test" in p.read_text() for p in demo.outbox.glob("*.eml")),
             "no reset mail for ada")  # fmt: skip
    mail = next(
        p.read_text() for p in demo.outbox.glob("*.eml") if "ada@acme.test" in p.read_text()
    )
    assert f"{demo.base}/reset-password/" in mail


def test_the_readme_walk_names_the_tour_steps_in_the_tour_order() -> None:
    browser_steps = readme_section("### In the browser")
    named = re.findall(r"/tour#step-([\w-]+)\)", browser_steps)
    assert named == [step.id for step in STEPS]


def test_every_curl_in_the_readme_blocks_promises_a_status() -> None:
    for heading in ("### With curl", "### With the API"):
        for command in commands_of(first_sh_block(heading)):
            if command.text.lstrip().startswith("curl "):
                assert command.expected is not None, command.text


def test_make_demo_port_moves_the_server_mail_links_and_passkeys() -> None:
    seed_line, serve_line = demo_recipe(5001)
    assert "--port 5001" in serve_line
    for line in (seed_line, serve_line):
        assert "FLASK_BASE_URL=${FLASK_BASE_URL:-http://127.0.0.1:5001}" in line
        assert "FLASK_WEBAUTHN_ORIGIN=${FLASK_WEBAUTHN_ORIGIN:-http://localhost:5001}" in line


# ---------------------------------------------------------------------------
# README sentences that state what the code does
# ---------------------------------------------------------------------------


def test_the_readme_policy_table_is_what_flask_policy_prints() -> None:
    assert policy_markdown() in README.read_text(encoding="utf-8")


def test_the_readme_names_as_many_throughput_rounds_as_the_bench_runs() -> None:
    source = (ROOT / "bench" / "throughput.py").read_text(encoding="utf-8")
    found = re.search(r"^ROUNDS = (\d+)$", source, re.M)
    assert found
    assert f"median of {found.group(1)} back-to-back pairs" in README.read_text(encoding="utf-8")


def test_the_api_reference_says_if_match_is_optional_as_the_api_does() -> None:
    page = (ROOT / "static" / "api-docs.html").read_text(encoding="utf-8")
    assert "<code>If-Match</code> is optional" in page
    assert "needs the version you read" not in page


def test_in_demo_mode_the_first_of_the_two_404_bodies_differs_as_the_readme_says(
    database_file: Path,
) -> None:
    assert "In demo mode the first one differs" in readme_section("### With curl")
    app = make_test_app(database_file, DEMO_MODE=True)
    client = app.test_client()
    sign_in(client, "linus@acme.test")
    hidden, missing = client.get("/invoices/inv_42"), client.get("/invoices/inv_999999")
    assert hidden.status_code == missing.status_code == 404
    assert "hidden" in hidden.get_data(as_text=True)
    assert "hidden" not in missing.get_data(as_text=True)
    app.extensions["db_engine"].dispose()
