"""The package layout, read with ``ast`` (nothing is imported): the dependency direction
data_prep <- models <- rewards <- rl <- launch, no import cycle, no import of an old module path, small modules."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.conftest import REPO

LAYERS = ("data_prep", "models", "rewards", "rl", "launch")  # each imports only those to its left
TRAINER_MAX_LINES = 350


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(p): p for layer in LAYERS for p in sorted((REPO / layer).rglob("*.py"))
                            if "__pycache__" not in p.parts}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom, those inside functions included, except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                stack.extend(child.orelse)  # the runtime branch still counts
                continue
            stack.append(child)


def imported_names(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of everything the module imports; ``from a import b`` gives ``a.b`` (a module or a name)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    out = []
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
            continue
        base = node.module or ""
        if node.level:  # relative: resolved against this module's package
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([base] if base else []))
        out += [(node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base) for alias in node.names]
    return sorted(out)


def resolve(name: str) -> str | None:
    """The project module a dotted import name lands in (the longest known prefix), or None (third-party)."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in MODULES:
            return ".".join(parts[:k])
    return None


IMPORTS: dict[str, list[tuple[int, str, str | None]]] = {
    m: [(line, name, resolve(name)) for line, name in imported_names(m, p)] for m, p in MODULES.items()}


def where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(REPO)}:{line}"


def test_every_layer_is_found():
    assert {m.split(".")[0] for m in MODULES} == set(LAYERS)
    assert "rl.trainer" in MODULES and "data_prep.moved" in MODULES and "models.networks.transmitter" in MODULES


def test_each_package_imports_only_packages_to_its_left():
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    violations = []
    for module, imports in IMPORTS.items():
        own = module.split(".")[0]
        for line, name, _target in imports:
            top = name.split(".")[0]
            if top in rank and rank[top] > rank[own]:
                allowed = ", ".join(LAYERS[: rank[own]]) or "no other package"
                violations.append(f"{where(module, line)}: {module} imports {name} ({own} may import {allowed})")
    assert not violations, "imports against data_prep <- models <- rewards <- rl <- launch:\n" + "\n".join(violations)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack, stack, cycles = set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_find_cycles_on_hand_built_graphs():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"a"}}) == [["a"]]


def test_no_import_cycle():
    graph: dict[str, set[str]] = defaultdict(set)
    lines: dict[tuple[str, str], int] = {}
    for module, imports in IMPORTS.items():
        graph[module]
        for line, _name, target in imports:
            if target is not None:
                graph[module].add(target)
                lines.setdefault((module, target), line)
    graph = {m: {t for t in targets if t in graph} for m, targets in graph.items()}
    report = []
    for cycle in find_cycles(graph):
        members = set(cycle)
        edges = [f"  {where(m, lines[(m, t)])}: {m} imports {t}" for m in cycle for t in sorted(graph[m] & members)]
        report.append(f"cycle among {', '.join(cycle)}:\n" + "\n".join(edges))
    assert not report, "import cycles (imports inside functions count; `if TYPE_CHECKING:` ones do not):\n" + \
        "\n".join(report)


def moved_paths() -> dict[str, str]:
    tree = ast.parse(MODULES["data_prep.moved"].read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "MOVED" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("data_prep/moved.py defines no MOVED dict")


def test_no_module_imports_an_old_path():
    moved = moved_paths()
    assert "models.transmitter" in moved  # the table was read
    offenders = [f"{where(module, line)}: {module} imports {name}, which moved to {moved[old]}"
                 for module, imports in IMPORTS.items() if module != "data_prep.moved"
                 for line, name, _target in imports
                 for old in [next((o for o in moved if name == o or name.startswith(o + ".")), None)] if old]
    assert not offenders, "imports of old module paths (data_prep/moved.py MOVED):\n" + "\n".join(offenders)


def test_trainer_stays_small():
    n = len(MODULES["rl.trainer"].read_text().splitlines())
    assert n <= TRAINER_MAX_LINES, f"rl/trainer.py has {n} lines (at most {TRAINER_MAX_LINES})"


def test_imported_names_sees_function_and_relative_imports_but_not_type_checking(tmp_path):
    path = tmp_path / "__init__.py"
    path.write_text("from typing import TYPE_CHECKING\nfrom . import b\nfrom ..c import d\n"
                    "if TYPE_CHECKING:\n    import rl.trainer\nelse:\n    import rl.loop\n"
                    "def f():\n    import launch.cli\n")
    assert imported_names("rl.evaluation", path) == [(1, "typing.TYPE_CHECKING"), (2, "rl.evaluation.b"),
                                                     (3, "rl.c.d"), (7, "rl.loop"), (9, "launch.cli")]


def test_test_file_names_are_unique():
    """pytest imports test files by basename (no __init__.py in tests/): two files of one name cannot both run."""
    from collections import Counter

    names = Counter(p.name for p in (REPO / "tests").rglob("test_*.py"))
    assert not [n for n, c in names.items() if c > 1], f"test files sharing a name: {sorted(n for n, c in names.items() if c > 1)}"
