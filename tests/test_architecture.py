"""The shape of the tree (docs/architecture.md): no import cycle anywhere in ``src/lmix``, counting
imports inside functions, and the library never imports the experiment system."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
LIBRARY = ("lmix.mixing", "lmix.models", "lmix.augment", "lmix.data", "lmix.transforms", "lmix.integrations")
# The mixing core is pure torch: it may import torch and these of lmix's modules only.
MIXING_MAY_IMPORT = ("lmix.mixing", "lmix._checks", "lmix._seeds", "lmix.errors")


def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _runtime_imports(tree: ast.AST) -> list[ast.stmt]:
    """Every import statement, inside functions too, except under ``if TYPE_CHECKING:``."""
    found: list[ast.stmt] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the lmix modules it imports (a ``from pkg import name`` of a submodule counts as that module)."""
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [resolve(a.name) for a in node.names if a.name.startswith("lmix")]
            else:
                base = node.module or ""
                if node.level:
                    stem = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(stem + ([base] if base else []))
                if not base.startswith("lmix"):
                    continue
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else resolve(base) for a in node.names]
            graph[name] |= {t for t in targets if t and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_src():
    assert cycles(import_graph()) == []


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_library_never_imports_the_experiment_system():
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith(LIBRARY):
            assert not [t for t in targets if t.startswith("lmix.experiments")], name


def test_the_mixing_core_imports_torch_and_its_leaves_only():
    for name, path in modules().items():
        if not name.startswith("lmix.mixing"):
            continue
        for node in _runtime_imports(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for mod in names:
                if node.__class__ is ast.ImportFrom and node.level:
                    continue
                top = mod.split(".")[0]
                assert top in ("torch", "__future__", "lmix") or top in {"collections", "copy", "dataclasses",
                    "functools", "inspect", "io", "math", "numbers", "threading", "typing", "warnings"}, (name, mod)  # fmt: skip
                if top == "lmix":
                    assert mod.startswith(MIXING_MAY_IMPORT), (name, mod)
