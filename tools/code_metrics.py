"""The code review's table of numbers (../shared/reviews/code-review.md, section 1 and appendix), reproducibly.

    .venv/bin/python tools/code_metrics.py            # a markdown table of the product code's figures
    .venv/bin/python tools/code_metrics.py --json     # the same as JSON

Product code: every `*.py` under libs/, services/, src/ and clients/, migrations aside. "Code lines" are lines
that are not blank, comment or docstring. Function length is `end_lineno - lineno + 1`. The import graph counts
every import of a hubpulse package made at import time, those under `if TYPE_CHECKING:` included, so a cycle
hidden from the interpreter is still one; a second figure adds the imports deferred into functions. Repeated
places come from the `duplicates` command when it is on PATH (pairs of 6+ similar lines, both sides product code).
"""

from __future__ import annotations

import ast
import io
import json
import re
import shutil
import statistics
import subprocess
import sys
import tokenize
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_DIRS = ("libs", "services", "src", "clients")
FIRST_PARTY = re.compile(r"^hubpulse(_[a-z]+)?$")
# The review's appendix: comments or docstrings quoting timings, sizes, ratios, PR-AUC or "(was N)".
FMT_SKIP = re.compile(r"#\s*fmt:\s*skip")
MEASURED = re.compile(
    r"(#|^\s+[A-Za-z`(]).*([0-9][0-9.,]* ?(ms|us|µs|GiB|MiB|rows/s|req/s)\b|[0-9.]+ ?% of|PR-AUC"
    r"|[0-9]x (slower|faster)|py-spy|\(was [0-9])"
)
INLINE_API_ERROR = re.compile(r"\bApiError\(\s*\d{3}")


def product_files(root: Path = ROOT) -> list[Path]:
    files = (p for d in PRODUCT_DIRS for p in (root / d).rglob("*.py"))
    return sorted(p for p in files if "migrations" not in p.parts and ".venv" not in p.parts)


def _docstring_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            text = first.value if isinstance(first, ast.Expr) else None
            if isinstance(text, ast.Constant) and isinstance(text.value, str) and first.end_lineno is not None:
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def _comment_lines(source: str) -> set[int]:
    """Lines holding only a comment."""
    found: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and source.splitlines()[tok.start[0] - 1].lstrip().startswith("#"):
            found.add(tok.start[0])
    return found


def _trailing_comment_lines(source: str) -> set[int]:
    """Lines of code that end in a comment."""
    return {
        tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT
    }


def code_lines(source: str, tree: ast.Module) -> int:
    skip = _docstring_lines(tree) | _comment_lines(source)
    return sum(1 for n, line in enumerate(source.splitlines(), 1) if line.strip() and n not in skip)


def function_lengths(tree: ast.Module) -> Iterator[int]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
            yield node.end_lineno - node.lineno + 1


def module_name(path: Path, root: Path = ROOT) -> str | None:
    """`hubpulse_gateway.catalog.query` for services/api-gateway/src/hubpulse_gateway/catalog/query.py."""
    parts = path.relative_to(root).with_suffix("").parts
    for i, part in enumerate(parts):
        if FIRST_PARTY.match(part):
            names = list(parts[i:])
            if names[-1] == "__init__":
                names.pop()
            return ".".join(names)
    return None


def _module_level(node: ast.AST) -> Iterator[ast.AST]:
    """Every node outside function bodies: what runs at import (`if TYPE_CHECKING:` blocks included)."""
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield child
            yield from _module_level(child)


def _imported(tree: ast.Module, module: str, is_package: bool, modules: set[str], deferred: bool) -> Iterator[str]:
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree) if deferred else _module_level(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base


def import_graph(files: Iterable[Path], root: Path = ROOT, deferred: bool = False) -> dict[str, set[str]]:
    """Module -> the first-party modules it imports at import time (`deferred`: also inside functions). A
    `from pkg import name` counts as `pkg.name` when that is a module, else as `pkg`."""
    sources = {name: path for path in files if (name := module_name(path, root))}
    modules = set(sources)
    graph: dict[str, set[str]] = {}
    for name, path in sources.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = _imported(tree, name, path.name == "__init__.py", modules, deferred)
        graph[name] = {t for t in imported if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _is_product(location: str) -> bool:
    path = location.rsplit(":", 1)[0]
    return path.endswith(".py") and path.startswith(PRODUCT_DIRS) and "/migrations/" not in path


def repeated_places(root: Path = ROOT) -> int | None:
    """Pairs from `duplicates` whose two sides are both product code (None when the command is absent)."""
    command = shutil.which("duplicates")
    if command is None:
        return None
    out = subprocess.run(
        [command, "--repo", str(root), "--most", "200", "--seconds", "120"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    pairs = (line.split() for line in out.splitlines() if re.match(r"^D\d+ ", line))
    return sum(1 for p in pairs if len(p) > 3 and _is_product(p[1]) and _is_product(p[3]))


def _percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0


def measure(root: Path = ROOT, with_duplicates: bool = True) -> dict[str, object]:
    files = product_files(root)
    total_code = 0
    sizes: list[int] = []
    functions: list[int] = []
    dict_any = fmt_skip = measured = inline_errors = 0
    for path in files:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        total_code += code_lines(source, tree)
        sizes.append(len(source.splitlines()))
        functions.extend(function_lengths(tree))
        dict_any += source.count("dict[str, Any]")
        fmt_skip += len(FMT_SKIP.findall(source))
        prose = _docstring_lines(tree) | _comment_lines(source) | _trailing_comment_lines(source)
        measured += sum(1 for n, line in enumerate(source.splitlines(), 1) if n in prose and MEASURED.search(line))
        inline_errors += len(INLINE_API_ERROR.findall(source))
    return {
        "files": len(files),
        "code_lines": total_code,
        "file_lines_median_p90_max": [int(statistics.median(sizes)), _percentile(sizes, 0.9), max(sizes)],
        "function_lines_median_p90_p99": [
            int(statistics.median(functions)),
            _percentile(functions, 0.9),
            _percentile(functions, 0.99),
        ],
        "functions_over_50_lines_pct": round(100 * sum(f > 50 for f in functions) / len(functions), 1),
        "dict_str_any": dict_any,
        "dict_str_any_per_1k": round(1000 * dict_any / total_code, 1),
        "fmt_skip": fmt_skip,
        "measured_figures_in_comments": measured,
        "inline_api_error": inline_errors,
        "import_cycles": cycles(import_graph(files, root)),
        "import_cycles_with_deferred_imports": cycles(import_graph(files, root, deferred=True)),
        "repeated_places": repeated_places(root) if with_duplicates else None,
    }


def as_table(figures: dict[str, object]) -> str:
    rows = [f"| {name} | {json.dumps(value)} |" for name, value in figures.items()]
    return "\n".join(["| figure | value |", "| --- | --- |", *rows])


def main(argv: list[str]) -> None:
    figures = measure()
    print(json.dumps(figures, indent=2) if "--json" in argv else as_table(figures))


if __name__ == "__main__":
    main(sys.argv[1:])
