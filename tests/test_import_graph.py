"""No import cycles among our own modules (``agents/`` is ``slm_agents``, ``finetune/`` is
``slm_agents.finetune``), read from the source with ``ast``, so nothing is imported to check.

The rule:

* an edge A -> B is an ``import``/``from ... import`` in A that names our module B:
  ``from slm_agents.x import y`` is an edge to ``slm_agents.x.y`` when that is a module, else
  to ``slm_agents.x``; relative imports are resolved against A's package;
* importing ``a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b``; those implied edges to
  parent packages are not counted (a package importing its own modules is the normal layout);
* ``if TYPE_CHECKING:`` blocks never run and are skipped;
* ``test_no_import_cycles_at_module_level``: only imports that run when the module is
  imported (module body, class bodies, top-level ``if``/``try``) count. A cycle there means a
  partly initialised module depends on the order in which modules happen to be imported.
* ``test_no_import_cycles_with_deferred_imports``: imports inside functions count too. They
  are deferred (for heavy libraries), not a licence for two modules to depend on each other:
  a cycle there is a design knot even when it imports fine.

``importlib.import_module`` with a computed name is not seen (``slm_agents.specialists`` loads
its own modules that way on first use, which is the parent-package case above).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"slm_agents": ROOT / "agents", "slm_agents.finetune": ROOT / "finetune"}


def our_modules() -> dict[str, Path]:
    """Dotted name -> source file, for every module of our packages."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.stmt, bool]]:
    """(import statement, whether it sits inside a function) for every import that can run."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, in_function = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, in_function
            continue
        if isinstance(node, ast.If) and _is_type_checking(node):
            children: list[ast.AST] = list(node.orelse)
        else:
            children = list(ast.iter_child_nodes(node))
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        stack.extend((child, inner) for child in children)


def _targets(node: ast.stmt, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Our modules an import statement in ``module`` names."""

    def ours(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        return {t for t in map(ours, names) if t}
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:  # relative: from the package of ``module``
        package = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    targets = set()
    for alias in node.names:
        full = f"{base}.{alias.name}"
        target = full if full in known else ours(base)
        if target:
            targets.add(target)
    return targets


def import_graph(deferred: bool) -> dict[str, set[str]]:
    """module -> our modules it imports (at module level; with ``deferred``, in functions too)."""
    modules = our_modules()
    known = set(modules)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node, in_function in _imports(tree):
            if in_function and not deferred:
                continue
            graph[name] |= _targets(node, name, is_package, known) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> b -> ... -> a) per strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, set(group)) for group in sorted(groups)]


def _one_cycle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest cycle through the group's first module, staying inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")  # unreachable


def _report(found: list[list[str]]) -> str:
    return "import cycles:\n" + "\n".join("  " + " -> ".join(cycle) for cycle in found)


def test_every_module_is_seen_and_imports_resolve():
    graph = import_graph(deferred=True)
    assert {"slm_agents", "slm_agents.cli", "slm_agents.finetune.cli"} <= set(graph)
    assert "slm_agents.runtime.spec" in graph["slm_agents.runtime.hosting"]
    assert graph["slm_agents.finetune"] <= set(graph)


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_at_module_level():
    found = cycles(import_graph(deferred=False))
    assert not found, _report(found)


def test_no_import_cycles_with_deferred_imports():
    found = cycles(import_graph(deferred=True))
    assert not found, _report(found)
