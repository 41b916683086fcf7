"""Each test worker compiles the app's URL builders and templates once, not once per test.

Why: the suite builds a fresh app for almost every test, and a fresh app compiles
everything again. Two kinds of compiling were most of a test's CPU:

- URL builders: building the app cost about 45 ms, nearly all of it Werkzeug turning each
  of the app's ~140 URL rules into a small Python function with ``compile()``. That
  function depends only on the rule's parsed parts, its defaults and whether unknown
  arguments are appended, and reads the rule's converters through its ``self`` argument
  when called; so one compiled function serves every app's copy of the same rule.
- URL rules: parsing each rule's text into parts, a regex trace and converters was then
  most of what was left (12.6 → 5.0 ms per app, about 15 s of CPU over the suite). The
  parse depends only on the text, whether slashes merge and the map's converter classes;
  an app's copy of a rule parsed before gets the same parts and its own converters.
- SQL: SQLAlchemy keeps each statement's compiled SQL in its engine, keyed by the engine's
  dialect object, and every test app has an engine of its own: each test compiled its
  statements again, about 13 of them, a fifth of a typical test's CPU. Test apps on
  SQLite now share the first one's dialect (the same class and settings, so the same SQL
  and the same type processing) and its compiled SQL (reuse_compiled_sql).
- Templates: each app's Jinja environment parses and compiles every template it renders
  (about a third of test_orgs.py's CPU). Jinja's own bytecode cache keeps the compiled
  code of a template, checked against its source; here it is kept in memory and shared
  by every test app of the worker (they configure Jinja alike).

Only the tests do this; the app itself is untouched, and with a Werkzeug that no longer
has ``Rule._compile_builder`` the URL builders are left alone.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from types import CodeType
from typing import Any

from flask import Flask
from jinja2.bccache import Bucket, BytecodeCache
from sqlalchemy.engine import Dialect, Engine
from werkzeug.routing import Rule

_Builder = Callable[..., tuple[str, str]]


def _rule_key(rule: Rule, append_unknown: bool) -> tuple[Any, ...]:
    """Everything the generated function depends on."""
    defaults = sorted((key, repr(value)) for key, value in (rule.defaults or {}).items())
    converters = sorted((name, type(c).__name__) for name, c in rule._converters.items())
    return (
        rule.rule,
        rule.subdomain,
        rule.host,
        rule.merge_slashes,
        tuple(rule._trace),
        tuple(defaults),
        tuple(converters),
        append_unknown,
    )


def reuse_compiled_url_builders() -> None:
    """Memoize ``Rule._compile_builder`` for the rest of this process."""
    original = getattr(Rule, "_compile_builder", None)
    if original is None or getattr(original, "memoized", False):
        return
    compiled: dict[tuple[Any, ...], _Builder] = {}

    def compile_builder(self: Rule, append_unknown: bool = True) -> _Builder:
        key = _rule_key(self, append_unknown)
        if key not in compiled:
            compiled[key] = original(self, append_unknown)
        return compiled[key]

    compile_builder.memoized = True  # type: ignore[attr-defined]
    Rule._compile_builder = compile_builder  # type: ignore[method-assign]
    _reuse_parsed_rules()


_Parsed = tuple[tuple[Any, ...], tuple[tuple[bool, str], ...], dict[str, Any]]


def _reuse_parsed_rules() -> None:
    """Memoize what ``Rule.compile`` parses, for rules without host or subdomain."""
    original = Rule.compile
    if getattr(original, "memoized", False):
        return
    parsed: dict[tuple[Any, ...], _Parsed] = {}

    def compile_rule(self: Rule) -> None:
        url_map = self.map
        if url_map is None or url_map.host_matching or self.subdomain:
            return original(self)
        key = (self.rule, self.merge_slashes, tuple(sorted(url_map.converters.items())))
        if key not in parsed:
            original(self)
            parsed[key] = (tuple(self._parts), tuple(self._trace), dict(self._converters))
            return None
        parts, trace, converters = parsed[key]
        self._parts = list(parts)  # Werkzeug's RuleParts are only read after the parse
        self._trace = list(trace)
        self._converters = {}
        for name, converter in converters.items():
            own = copy.copy(converter)
            own.map = url_map  # a converter belongs to its map
            self._converters[name] = own
        self.arguments.update(converters)
        self._build = self._compile_builder(False).__get__(self, None)  # type: ignore[attr-defined]
        self._build_unknown = self._compile_builder(True).__get__(self, None)  # type: ignore[attr-defined]
        return None

    compile_rule.memoized = True  # type: ignore[attr-defined]
    compile_rule.original = original  # type: ignore[attr-defined]
    Rule.compile = compile_rule  # type: ignore[method-assign]


class _TemplateCodeInMemory(BytecodeCache):
    """Compiled template code by template and source checksum, for this process."""

    def __init__(self) -> None:
        self.code: dict[str, tuple[str, CodeType]] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        checksum, code = self.code.get(bucket.key, ("", None))
        if code is not None and checksum == bucket.checksum:  # a changed template compiles
            bucket.code = code

    def dump_bytecode(self, bucket: Bucket) -> None:
        if bucket.code is not None:
            self.code[bucket.key] = (bucket.checksum, bucket.code)


TEMPLATE_CODE = _TemplateCodeInMemory()


def reuse_compiled_templates(app: Flask) -> Flask:
    """Let ``app`` render with template code another test app of this worker compiled."""
    app.jinja_env.bytecode_cache = TEMPLATE_CODE
    return app


# The first SQLite engine of this worker: its dialect and its compiled SQL.
_SQLITE_SQL: dict[tuple[Any, ...], tuple[Dialect, Any]] = {}


def reuse_compiled_sql(app: Flask) -> Flask:
    """Let ``app``'s SQLite engine use the SQL another test app of this worker compiled.

    Its pool, connections and events stay its own (its own file); only the dialect that
    compiles statements and the cache of compiled SQL are shared. Other databases are left
    alone: a PostgreSQL dialect reads its schema when it first connects.
    """
    engine: Engine = app.extensions["db_engine"]
    dialect = engine.dialect
    if dialect.name != "sqlite":
        return app
    key = (type(dialect), dialect.paramstyle, engine.get_execution_options().get("isolation_level"))
    if key not in _SQLITE_SQL:
        with engine.connect():  # the dialect learns the SQLite version on first connect
            pass
        _SQLITE_SQL[key] = (dialect, engine._compiled_cache)
        return app
    shared_dialect, compiled = _SQLITE_SQL[key]
    engine.dialect = shared_dialect
    engine.update_execution_options(compiled_cache=compiled)
    return app
