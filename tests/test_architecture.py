"""The layers of ARCHITECTURE.md: core imports no adapter, service or shell; adapters import no shell."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "omniweave"
FORBIDDEN = {
    "core": ("omniweave.adapters", "omniweave.service", "omniweave.shells", "omniweave.demo",
             "omniweave.collect.files", "sqlalchemy", "fastapi", "duckdb", "ibis", "httpx", "fsspec"),
    "adapters": ("omniweave.service", "omniweave.shells", "omniweave.demo"),
    "service": ("omniweave.shells",),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_dependencies_point_one_way(layer: str):
    offenders = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for module in imported_modules(path):
            if module.startswith(FORBIDDEN[layer]):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not offenders, "\n".join(offenders)
