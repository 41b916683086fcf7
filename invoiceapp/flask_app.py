"""The Flask class create_app() builds: Flask itself, minus work this app never needs.

Each override is a hook Flask documents for exactly this, and each says what it saves.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote_plus

from flask import Flask
from flask.globals import _cv_request


class InvoiceApp(Flask):
    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Every view, hook and error handler, as it is: this app has no ``async def`` ones.

        Flask asks ``inspect.iscoroutinefunction`` of each function before calling it, about
        17 times per page (0.007 ms of a 0.13 ms anonymous request, measured). Async views
        could not run here anyway (Flask's async support needs asgiref, not installed), and
        one added by mistake is refused when it is registered (add_url_rule) or when the app
        is built (refuse_async_functions), instead of failing on its first request.
        """
        return func

    def add_url_rule(
        self,
        rule: str,
        endpoint: str | None = None,
        view_func: Callable[..., Any] | None = None,
        provide_automatic_options: bool | None = None,
        **options: Any,
    ) -> None:
        if view_func is not None:
            _refuse_async(view_func, f"the view of {rule}")
        super().add_url_rule(rule, endpoint, view_func, provide_automatic_options, **options)

    def url_for(
        self,
        /,
        endpoint: str,
        *,
        _anchor: str | None = None,
        _method: str | None = None,
        _scheme: str | None = None,
        _external: bool | None = None,
        **values: Any,
    ) -> str:
        """Flask's url_for, with a short cut for the commonest calls in a page: one value,
        in a route's path (url_for("invoices.send", invoice_id=...)) or as the one query
        argument of a route without values (url_for("invoices.index", organization=...)).

        Flask and Werkzeug find the rule, copy and filter the values, and join the pieces on
        every call: about 14 µs, six times on the invoice page and once per row of a list.
        Such a URL is the route's own text with the value quoted into it, so the first call
        for a route (per mount point) splits a URL that Flask built into the text before and
        after the value; later calls quote the value between them. Every other call (several
        values, a value that is not a string or a number, an anchor, an external URL,
        outside a request) is Flask's own, and so is every route whose pattern does not pass
        the check in ``_one_value_pattern``.
        """
        request_context = _cv_request.get(None)
        if (
            request_context is not None
            and len(values) == 1
            and _anchor is None
            and _method is None
            and _scheme is None
            and _external is None
            and endpoint[:1] != "."
        ):
            ((name, value),) = values.items()
            adapter = request_context.url_adapter
            if type(value) in _PLAIN_VALUES and adapter is not None:
                key = (adapter.script_name, adapter.subdomain, endpoint, name)
                patterns = self._one_value_patterns
                pattern = patterns.get(key, _UNKNOWN)
                if pattern is _UNKNOWN:
                    if len(patterns) >= MAX_URL_PATTERNS:
                        patterns.clear()  # see MAX_URL_PATTERNS
                    pattern = patterns[key] = self._one_value_pattern(endpoint, name)
                if pattern is not None:
                    before, to_url, after = pattern
                    return before + to_url(value) + after
        return super().url_for(
            endpoint,
            _anchor=_anchor,
            _method=_method,
            _scheme=_scheme,
            _external=_external,
            **values,
        )

    @property
    def _one_value_patterns(self) -> dict[tuple[str, str | None, str, str], _Pattern | None]:
        patterns: dict[Any, Any] = self.extensions.setdefault("one_value_url_patterns", {})
        return patterns

    def _one_value_pattern(self, endpoint: str, name: str) -> _Pattern | None:
        """The text around ``name``'s value in ``endpoint``'s URL at this mount point, or
        None where the short cut would not give exactly what Flask does. The endpoint must
        have one rule without defaults, whose only value is ``name`` with the default
        converter (a path value), or that has no value at all (``name`` is then a query
        argument); no url_defaults function may add values; and the URLs built both ways
        for values that need quoting must be the same."""
        rules = list(self.url_map.iter_rules(endpoint))
        if len(rules) != 1 or rules[0].defaults or self.url_default_functions:
            return None
        rule = rules[0]
        if rule.arguments == {name} and f"<{name}>" in rule.rule:
            to_url: Callable[[Any], str] = self.url_map.converters["default"](self.url_map).to_url
        elif not rule.arguments and not self.url_map.sort_parameters:
            to_url = _query_value
        else:
            return None
        marker = "zq0value0qz"
        values: dict[str, Any] = {name: marker}
        built = super().url_for(endpoint, **values)
        if not built.startswith("/") or built.count(marker) != 1:
            return None  # an external URL (another subdomain) depends on more than the path
        before, after = built.split(marker)
        for probe in _PROBES:
            values = {name: probe}
            if before + to_url(probe) + after != super().url_for(endpoint, **values):
                return None
        return before, to_url, after


# Patterns kept per process. The endpoints and names come from the app's own code, but the
# mount point is the request's SCRIPT_NAME, which a trusted forwarder may send as a header
# (gunicorn's forwarder_headers): a client able to vary it must not grow the dict forever.
MAX_URL_PATTERNS = 4096
# A route's URL around its one value: the text before, the converter's quoting, the text after.
_Pattern = tuple[str, Callable[[Any], str], str]
_UNKNOWN: Any = object()
# Values that need quoting, or are not strings, to check a pattern against Flask's own URLs.
_PROBES: tuple[Any, ...] = ("a b/c?d#e%f&g=h+i", "é—ü", "inv_7", 42, "")
# The values the short cut takes; others (a list: several query arguments) are Flask's.
_PLAIN_VALUES = frozenset({str, int})


def _query_value(value: Any) -> str:
    """A query argument's value as Werkzeug encodes it (werkzeug.urls._urlencode)."""
    return quote_plus(str(value), safe="!$'()*,/:;?@")


def refuse_async_functions(app: Flask) -> None:
    """At start-up: no ``async def`` view, hook or error handler (see InvoiceApp.ensure_sync)."""
    functions: list[tuple[str, Callable[..., Any]]] = [
        (f"view {endpoint}", view) for endpoint, view in app.view_functions.items()
    ]
    hook_tables: Iterable[tuple[str, dict[Any, list[Callable[..., Any]]]]] = (
        ("before_request", app.before_request_funcs),
        ("after_request", app.after_request_funcs),
        ("teardown_request", app.teardown_request_funcs),
        ("context_processor", app.template_context_processors),
        ("url_value_preprocessor", app.url_value_preprocessors),
    )
    for kind, table in hook_tables:
        functions.extend((kind, hook) for hooks in table.values() for hook in hooks)
    functions.extend(("teardown_appcontext", hook) for hook in app.teardown_appcontext_funcs)
    for by_code in app.error_handler_spec.values():
        for handlers in by_code.values():
            functions.extend(("error handler", handler) for handler in handlers.values())
    for kind, function in functions:
        _refuse_async(function, kind)


def _refuse_async(function: Callable[..., Any], what: str) -> None:
    if inspect.iscoroutinefunction(function):
        raise TypeError(
            f"{what} ({getattr(function, '__qualname__', function)!r}) is async; this app "
            "runs every function as it is (invoiceapp.flask_app.InvoiceApp.ensure_sync)"
        )
