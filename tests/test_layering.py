"""The dependency direction generative -> dynamics -> solvers, and peers only in tests."""
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
