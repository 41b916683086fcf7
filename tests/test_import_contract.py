"""The layers import downwards only, so each question is answered in one room.

authn (who is this?) knows nothing of authz (may they?) or of the pages; authz knows
nothing of the pages or the API; the API never borrows from the pages; and no module of
the package needs seed.py, which a wheel would not contain. Finally, no two parts of the
package import each other, not even from inside a function: a cycle means one of them
is reaching back for something that belongs below both.

The imports are read with ast, not by importing: a lazy import inside a function is
still a dependency, and it is exactly how cycles hide.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "invoiceapp"

# layer -> the packages it must never import
NEVER = {
    "authn": {"authz", "views", "api"},
    "authz": {"views", "api"},
    "api": {"views"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> Iterator[str]:
    """Every module a file imports, relative imports resolved, at any depth of the file."""
    name = module_name(path).split(".")
    here = name if path.name == "__init__.py" else name[:-1]
    return imports_in(path.read_text(), here)


def imports_in(source: str, here: list[str]) -> Iterator[str]:
    """The modules a source imports; ``here`` is its package, for relative imports."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module
            # "from . import passkeys" imports a module named by the alias.
            yield from (f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and _loads_by_name(node):
            yield from (arg.value for arg in node.args if isinstance(arg, ast.Constant))


def _loads_by_name(call: ast.Call) -> bool:
    """importlib.import_module("seed") and spec_from_file_location("seed", ...)."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in {"import_module", "spec_from_file_location", "__import__"}


def part_of(module: str) -> str | None:
    """The part of the package a module belongs to: a subpackage, or a top-level module."""
    parts = module.split(".")
    if parts[0] != "invoiceapp" or len(parts) < 2:
        return None
    if (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file():
        return parts[1]
    return None


def package_files() -> list[Path]:
    # invoiceapp/__init__.py is the factory: it wires every part together, inside create_app.
    return sorted(path for path in PACKAGE.rglob("*.py") if path != PACKAGE / "__init__.py")


def dependencies() -> dict[str, dict[str, set[str]]]:
    """part -> part it imports -> the files that do it (for a readable failure)."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in package_files():
        here = part_of(module_name(path))
        assert here is not None
        for module in imported_modules(path):
            there = part_of(module)
            if there is not None and there != here:
                graph.setdefault(here, {}).setdefault(there, set()).add(module_name(path))
    return graph


@pytest.mark.parametrize("layer", sorted(NEVER))
def test_a_layer_never_imports_the_layers_above_it(layer: str) -> None:
    reaching_up = {
        there: sorted(files)
        for there, files in dependencies().get(layer, {}).items()
        if there in NEVER[layer]
    }
    assert reaching_up == {}


def test_nothing_in_the_package_imports_seed_py() -> None:
    importers = [
        module_name(path)
        for path in package_files()
        if any(module.split(".")[0] == "seed" for module in imported_modules(path))
    ]
    assert importers == []


def test_no_two_parts_of_the_package_import_each_other() -> None:
    graph = dependencies()
    cycles = [sorted(component) for component in strongly_connected(graph) if len(component) > 1]
    assert cycles == [], {
        part: {there: sorted(files) for there, files in graph[part].items() if there in cycle}
        for cycle in cycles
        for part in cycle
    }


def strongly_connected(graph: dict[str, dict[str, set[str]]]) -> list[set[str]]:
    """Tarjan's algorithm: the groups of parts that can all reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(part: str) -> None:
        index[part] = low[part] = len(index)
        stack.append(part)
        for there in graph.get(part, {}):
            if there not in index:
                visit(there)
                low[part] = min(low[part], low[there])
            elif there in stack:
                low[part] = min(low[part], index[there])
        if low[part] == index[part]:
            component = set()
            while True:
                top = stack.pop()
                component.add(top)
                if top == part:
                    break
            components.append(component)

    for part in sorted(graph):
        if part not in index:
            visit(part)
    return components


def test_the_contract_sees_lazy_imports_and_modules_loaded_by_name() -> None:
    """The walk must not miss the kinds of import that hid what it forbids."""
    source = (
        "def unauthenticated():\n"
        "    from ..authz.audit import record_audit\n"
        "def reset():\n"
        "    importlib.import_module('seed')\n"
    )
    found = set(imports_in(source, ["invoiceapp", "authn"]))
    assert {"invoiceapp.authz.audit", "seed"} <= found


def test_only_the_factory_imports_the_pages() -> None:
    """The pages are the top floor: helpers that templates or the API need live below."""
    importers = {
        part: sorted(files)
        for part, imports in dependencies().items()
        for there, files in imports.items()
        if there == "views" and part != "views"
    }
    assert importers == {}


def test_authn_is_mechanisms_only_and_serves_no_page() -> None:
    """Every page, /account and sign-in alike, is a blueprint under views/."""
    serving = [
        module_name(path)
        for path in sorted((PACKAGE / "authn").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Blueprint"
    ]
    assert serving == []
