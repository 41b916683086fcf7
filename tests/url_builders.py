"""Each test worker compiles the app's URL builders once, not once per test.

Why: building the app costs about 45 ms of CPU, and nearly all of it is Werkzeug turning
each of the app's ~140 URL rules into a small Python function with ``compile()`` (twice
per rule). The suite builds a fresh app for almost every test, so that was well over a
minute of CPU spent compiling the same functions again and again.

The function Werkzeug builds for a rule depends only on the rule's parsed parts, its
defaults and whether unknown arguments are appended; it reads the rule's converters
through its ``self`` argument when called. So one compiled function serves every app's
copy of the same rule. Only the tests do this; the app itself is untouched, and with a
Werkzeug that no longer has ``Rule._compile_builder`` nothing is patched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
