"""Command-line helpers: ``flask --app invoiceapp <command>``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TextIO

import click
from flask import Flask, current_app, has_app_context
from flask.cli import with_appcontext
from sqlalchemy import delete, or_, select

from .audit import record_audit
from .audit_chain import Noted, parse_noted, verify_lines
from .audit_retention import prune, signature_holds
from .authz.policy import (
    CUSTOM_ROLE_COLUMN,
    GRANTABLE_ACTIONS,
    INVOICE_STATES,
    POLICY,
    SELF_SERVICE,
)
from .db import get_db, rows_changed, utcnow
from .models import Role, User, UserSession
from .support_access import end as end_support
from .support_access import expire_due, open_grants_of

# The column for an organization's own roles, and its cell where no custom role may hold it.
CUSTOM_ROLE_HEADER = "custom role holding it"
NEVER_GRANTABLE = "never (the owner's)"

# Who the self-service table's one column is about.
SELF_SERVICE_WHO = "the account holder, in a browser session, never through an API token"


@click.command("policy")
@click.option("--markdown", is_flag=True, help="As the Markdown table in README.md.")
def print_policy(markdown: bool) -> None:
    """Print the permission table every view and template asks."""
    roles = [role.value for role in Role]
    if markdown:
        click.echo(policy_markdown())
        return
    width = max(len(action) for action in (*POLICY, *SELF_SERVICE)) + 2
    column = max(len(rule.value) for rules in POLICY.values() for rule in rules.values()) + 2
    header = "".join(role.ljust(column) for role in roles) + CUSTOM_ROLE_HEADER
    click.echo("action".ljust(width) + header)
    for action, rules in POLICY.items():
        cells = "".join(rules[role].value.ljust(column) for role in roles) + custom_cell(action)
        click.echo(action.ljust(width) + cells.rstrip())
    click.echo(f"\nYour own account, one column: {SELF_SERVICE_WHO}.")
    for action, rule in SELF_SERVICE.items():
        click.echo(f"  {action.ljust(width)}{rule.value}")
    click.echo("\nWhatever the role, an invoice action starts only from these states:")
    for action, states in INVOICE_STATES.items():
        click.echo(f"  {action.ljust(width)}{', '.join(sorted(states))}")


def custom_cell(action: str) -> str:
    """What a custom role holding ``action`` gets: the admin column's rule, or never."""
    if action not in GRANTABLE_ACTIONS:
        return NEVER_GRANTABLE
    return POLICY[action][CUSTOM_ROLE_COLUMN].value


def policy_markdown() -> str:
    """The policy as README.md shows it: one source, so the two cannot drift apart
    (tests/test_readme_walk.py compares them)."""
    roles = [role.value for role in Role]
    header = "| action | " + " | ".join([*roles, CUSTOM_ROLE_HEADER]) + " |"
    lines = [header, "|---" * (len(roles) + 2) + "|"]
    for action, rules in POLICY.items():
        cells = [rules[role].value for role in roles] + [custom_cell(action)]
        lines.append(f"| {action} | " + " | ".join(cells) + " |")
    lines += ["", f"| your own account | {SELF_SERVICE_WHO} |", "|---|---|"]
    lines += [f"| {action} | {rule.value} |" for action, rule in SELF_SERVICE.items()]
    return "\n".join(lines)


@click.command("prune-sessions")
@with_appcontext
def prune_sessions() -> None:
    """Delete sessions past their idle or absolute lifetime (they are refused anyway)."""
    config = current_app.config
    now = utcnow()

    def expired(idle: int, absolute: int) -> object:
        return or_(
            UserSession.last_seen_at < now - timedelta(seconds=idle),
            UserSession.created_at < now - timedelta(seconds=absolute),
        )

    db = get_db()
    removed = rows_changed(
        db,
        delete(UserSession).where(
            or_(
                (UserSession.remember.is_(False))
                & expired(config["SESSION_IDLE_SECONDS"], config["SESSION_ABSOLUTE_SECONDS"]),
                (UserSession.remember.is_(True))
                & expired(config["REMEMBER_IDLE_SECONDS"], config["REMEMBER_ABSOLUTE_SECONDS"]),
            )
        ),
    )
    db.commit()
    click.echo(f"removed {removed} expired sessions")


audit_commands = click.Group("audit", help="The audit log's tamper-evident chain.")


def _noted(_context: click.Context, _parameter: click.Parameter, value: str | None) -> Noted | None:
    try:
        return parse_noted(value) if value else None
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@audit_commands.command("verify")
@click.argument("export", type=click.File("r", encoding="utf-8"))
@click.option(
    "--noted",
    metavar="SEQ:HASH",
    callback=_noted,
    help="A record's number and record_hash kept from an earlier export: this one must hold "
    "it unchanged. Without it, a log rewritten with recomputed hashes also verifies.",
)
def verify_audit_export(export: TextIO, noted: Noted | None) -> None:
    """Check a JSON Lines export of an audit log: every record unchanged, none missing.

    Needs no database: it reads only the file (invoiceapp/audit_chain.py, which also runs
    on its own as ``python audit_chain.py FILE [SEQ:HASH]``), and SECRET_KEY to check the
    signature of a retention checkpoint. Exits 1 at the first broken link or a bad signature."""
    verdict = verify_lines(export, noted, signature_check=_checkpoint_signature_check())
    click.echo(str(verdict))
    if noted is not None and verdict.intact:
        click.echo(f"Record {noted.seq} carries the hash you noted.")
    if not verdict.intact:
        raise SystemExit(1)


def _checkpoint_signature_check() -> Callable[[Mapping[str, Any]], bool] | None:
    """Under ``flask audit verify`` the app, and so SECRET_KEY, is at hand; called as a
    plain click command (no app), the signature is reported as not checked."""
    if not has_app_context():
        return None
    secret = current_app.config["SECRET_KEY"]
    return lambda checkpoint: signature_holds(checkpoint, secret)


@audit_commands.command("prune")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@with_appcontext
def prune_audit_logs(dry_run: bool) -> None:
    """Remove audit records older than each organization's retention setting, leaving a
    signed checkpoint so the rest of its chain still verifies. Safe to run again, and
    while the app is writing; run it daily from cron."""
    reports = prune(
        current_app.extensions["db_engine"],
        utcnow(),
        current_app.config["SECRET_KEY"],
        dry_run=dry_run,
    )
    if not reports:
        click.echo("no organization has a retention setting: nothing to remove")
    for report in reports:
        verb = "would remove" if dry_run else "removed"
        where = f" (the chain now starts after number {report.last_seq})" if report.last_seq else ""
        click.echo(
            f"{report.slug}: keeps {report.days} days; {verb} {report.removed} records{where}"
        )


staff_commands = click.Group(
    "staff", help="Platform support staff: who may ask organizations for support access."
)


def _user_by_email(email: str) -> User:
    user = get_db().scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"no account with the address {email}")
    return user


@staff_commands.command("grant")
@click.argument("email")
@with_appcontext
def grant_staff(email: str) -> None:
    """Mark an account as support staff. The only way to set the flag: no page or API can."""
    user = _user_by_email(email)
    if not user.email_verified:
        # An unverified address may belong to a squatter who signed up with it first.
        raise click.ClickException(f"{user.email} is not verified yet: verify it, then grant")
    user.is_staff = True
    get_db().commit()
    record_audit("staff.grant", organization_id=None, resource_id=f"user:{user.id}",
                 reason="the operator granted the staff flag")  # fmt: skip
    click.echo(f"{user.email} is now support staff")


@staff_commands.command("revoke")
@click.argument("email")
@with_appcontext
def revoke_staff(email: str) -> None:
    """Remove the staff flag, and end that engineer's open requests and live grants."""
    db = get_db()
    user = _user_by_email(email)
    user.is_staff = False
    db.commit()
    record_audit("staff.revoke", organization_id=None, resource_id=f"user:{user.id}",
                 reason="the operator revoked the staff flag")  # fmt: skip
    ended = sum(
        end_support(db, grant, None, why="ended: the engineer is no longer support staff")
        for grant in open_grants_of(db, user)
    )
    click.echo(f"{user.email} is no longer support staff; {ended} open requests or grants ended")


@staff_commands.command("list")
@with_appcontext
def list_staff() -> None:
    """Every account with the staff flag."""
    emails = get_db().scalars(
        select(User.email).where(User.is_staff.is_(True)).order_by(User.email)
    )
    listed = list(emails)
    for email in listed:
        click.echo(email)
    if not listed:
        click.echo("nobody is support staff")


support_commands = click.Group("support", help="Support access granted by organizations.")


@support_commands.command("expire")
@with_appcontext
def expire_support() -> None:
    """End every support grant past its time, record it and mail the owner: once each, even
    if a request noticed it at the same moment (safe to run from cron, and again)."""
    click.echo(f"ended {expire_due(get_db())} expired support grants")


def register_commands(app: Flask) -> None:
    app.cli.add_command(staff_commands)
    app.cli.add_command(support_commands)
    app.cli.add_command(print_policy)
    app.cli.add_command(audit_commands)
    app.cli.add_command(prune_sessions)
