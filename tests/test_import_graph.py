"""The product code's import graph has no cycle (issue #15), checked with tools/code_metrics.py's graph: every
import made at import time, those under `if TYPE_CHECKING:` included, and those deferred into functions."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _metrics() -> ModuleType:
    spec = importlib.util.spec_from_file_location("code_metrics", ROOT / "tools" / "code_metrics.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _product_cycles(deferred: bool) -> list[list[str]]:
    """The cycles, computed in a fresh interpreter: CPython 3.11's `ast.parse` can fail with a spurious
    "AST constructor recursion depth mismatch" while other threads of a long test process run (cpython#106905),
    and the product tree is thousands of parses."""
    script = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('code_metrics', {str(ROOT / 'tools' / 'code_metrics.py')!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        f"print(json.dumps(m.cycles(m.import_graph(m.product_files(), deferred={deferred}))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    cycles: list[list[str]] = json.loads(done.stdout)
    return cycles


def test_the_product_code_has_no_import_cycle() -> None:
    assert _product_cycles(deferred=False) == []


def test_nor_one_through_imports_deferred_into_functions() -> None:
    assert _product_cycles(deferred=True) == []


def test_a_cycle_hidden_under_type_checking_is_found(tmp_path: Path) -> None:
    package = tmp_path / "libs" / "x" / "src" / "hubpulse_x"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from hubpulse_x.b import B\n\nclass A: ...\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from hubpulse_x.a import A\n\nclass B: ...\n"
    )
    (package / "c.py").write_text("def late() -> None:\n    from hubpulse_x import a\n")
    metrics = _metrics()
    files = metrics.product_files(tmp_path)
    assert metrics.cycles(metrics.import_graph(files, tmp_path)) == [["hubpulse_x.a", "hubpulse_x.b"]]
    assert metrics.import_graph(files, tmp_path)["hubpulse_x.c"] == set(), "a deferred import is not counted"
