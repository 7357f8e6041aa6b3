"""Dependency rules of the code base, checked on its source: ``indexer`` never imports ``retriever``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 420  # "about 400": a module past that becomes a package


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((REPO / "indexer").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_indexer_never_imports_retriever(path: Path) -> None:
    bad = sorted(m for m in imported_modules(path) if m == "retriever" or m.startswith("retriever."))
    assert not bad, f"{path.relative_to(REPO)} imports {bad}: indexer must not depend on retriever"


def test_the_rule_catches_a_retriever_import(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from retriever.api import Retriever\n    import retriever.query\n")
    assert imported_modules(f) == {"retriever.api", "retriever.query"}


@pytest.mark.parametrize(
    "path",
    sorted([*(REPO / "indexer").rglob("*.py"), *(REPO / "retriever").rglob("*.py")]),
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_no_module_is_over_about_400_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(REPO)} has {lines} lines; split it"
