"""Layering: schemas <- lineage <- replay <- tui. A lower layer never imports a higher one."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# For each layer: the top-level modules it must never import.
FORBIDDEN = {
    "schemas": {"lineage", "replay", "tui", "duckdb", "textual"},
    "lineage": {"replay", "tui", "textual"},
    "replay": {"tui", "textual"},
    "tui": {"duckdb"},
}


def loaded_after(statement: str) -> set[str]:
    """Top-level modules present in sys.modules after running ``statement`` in a fresh interpreter."""
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def imports_of(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, at any depth of the file (lazy imports too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value.split(".")[0])
    return names


def test_importing_schemas_loads_neither_duckdb_nor_lineage():
    loaded = loaded_after("import schemas, schemas.jsonschema, schemas.upcast")
    assert not loaded & {"duckdb", "lineage", "replay", "tui", "textual", "pyarrow"}


def test_importing_lineage_loads_neither_textual_nor_the_higher_layers():
    loaded = loaded_after("import lineage, lineage.store, lineage.verify, lineage.segments, lineage.tracker")
    assert not loaded & {"textual", "tui", "replay"}


def test_an_ingest_worker_loads_no_duckdb():
    # a worker process starts for every large ingest: what it imports is paid each time
    loaded = loaded_after("from lineage.ingest_workers import worker_main")
    assert not loaded & {"duckdb", "textual", "tui", "replay"}


def test_importing_the_cli_does_not_load_textual():
    loaded = loaded_after("import lineage.cli")
    assert "textual" not in loaded


def test_importing_the_cli_does_not_load_the_higher_layers():
    loaded = loaded_after("import lineage.cli")
    assert not loaded & {"tui", "replay"}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_module_imports_a_higher_layer(layer):
    package = ROOT / layer
    if not package.is_dir():
        pytest.skip(f"{layer}/ does not exist yet")
    offenders = []
    for path in sorted(package.rglob("*.py")):
        bad = imports_of(path) & FORBIDDEN[layer]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    assert not offenders, "layering broken:\n" + "\n".join(offenders)


def test_the_static_scan_catches_an_upward_import(tmp_path):
    """The scan itself must see lazy and aliased imports, or the test above proves nothing."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n"
        "def f():\n"
        "    from tui.app import App\n"
        "    import replay.cli as rc\n"
        "    import importlib; importlib.import_module('textual.widgets')\n"
        "from . import sibling\n"
    )
    assert imports_of(sample) == {"os", "tui", "replay", "importlib", "textual"}
