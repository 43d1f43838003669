"""The dependency direction generative -> dynamics -> solvers, peers only in tests, no import
cycles between modules, and small functions and modules in solvers/."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "solvers": {"dynamics", "generative"},
    "dynamics": {"generative"},
    "generative": set(),
}
PEERS = {"torchdiffeq", "torchsde", "torchode"}


def imported_roots(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_packages_do_not_import_higher_ones(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for lineno, root in imported_roots(path):
            if root in FORBIDDEN[package] | PEERS:
                bad.append(f"{path.relative_to(ROOT)}:{lineno} imports {root}")
    assert not bad, "layering violated:\n" + "\n".join(bad)


def test_checker_detects_a_violation(tmp_path):
    bad = tmp_path / "mod.py"
    bad.write_text("import generative.cli\nfrom torchsde import sdeint\n")
    roots = {root for _, root in imported_roots(bad)}
    assert {"generative", "torchsde"} <= roots


# --------------------------------------------------------------------------- import cycles

def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(tree: ast.AST):
    """Import nodes executed at run time: module level and inside functions (lazy imports
    count), but not under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(root: Path, packages):
    """Edges module -> imported module between the modules of ``packages`` under ``root``.
    ``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg``."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            modules[_module_name(path, root)] = path
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        for node in _runtime_imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = here[:len(here) - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod
                           for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(v):
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_between_modules():
    found = cycles(import_graph(ROOT, sorted(FORBIDDEN)))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_cycle_checker_detects_lazy_and_relative_cycles(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import g\n")
    (pkg / "b.py").write_text("def g():\n    from pkg.a import f\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from .a import f\n")
    (pkg / "d.py").write_text("from . import c\n")
    assert cycles(import_graph(tmp_path, ["pkg"])) == [["pkg.a", "pkg.b"]]


# --------------------------------------------------------------------------- sizes

def test_solver_functions_and_modules_are_small():
    """Every function in solvers/ is under 60 lines (signature and docstring included) and
    no module has more than 400 lines."""
    long_functions, big_modules = [], []
    for path in sorted((ROOT / "solvers").rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(ROOT)
        if len(text.splitlines()) > 400:
            big_modules.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length >= 60:
                    long_functions.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert not long_functions and not big_modules, "\n".join(long_functions + big_modules)
