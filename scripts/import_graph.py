#!/usr/bin/env python
"""The import graph of tomodenoise/, flows/ and tasks/: cycles, arrows against the layering, long functions.

    .venv/bin/python scripts/import_graph.py            # summary; exit 1 when a rule is broken
    .venv/bin/python scripts/import_graph.py --edges    # also every import edge between top-level rooms

Rules (docs/DESIGN.md): no import cycle between modules (function-level imports count); the
core (tomodenoise) imports neither flows, tasks nor benchmarks; tasks does not import flows;
no function over 120 lines in tomodenoise/, flows/, tasks/; flows/ under 400 lines.
Built with grimp (module-level and function-level imports) and networkx.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tomodenoise", "flows", "tasks")
MAX_FUNCTION_LINES = 120
MAX_FLOWS_LINES = 400
# who may not import whom (importer room -> forbidden rooms)
FORBIDDEN = {"tomodenoise": ("flows", "tasks", "benchmarks"), "tasks": ("flows", "benchmarks"),
             "flows": ("benchmarks",)}


def graph():
    """The module import graph as a networkx DiGraph (edges importer -> imported)."""
    import grimp
    import networkx as nx

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    g = grimp.build_graph(*PACKAGES, include_external_packages=False, cache_dir=None)
    out = nx.DiGraph()
    for m in g.modules:
        out.add_node(m)
        for imported in g.find_modules_directly_imported_by(m):
            out.add_edge(m, imported)
    return out


def cycles(g) -> list[list[str]]:
    """Groups of modules that import each other (strongly connected components of size > 1)."""
    import networkx as nx

    return sorted(sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1)


def back_arrows(g) -> list[tuple[str, str]]:
    """Imports against the layering (see ``FORBIDDEN``); benchmarks are not in the graph, so a core
    module naming ``benchmarks`` is found by reading the sources."""
    bad = [(a, b) for a, b in g.edges if b.split(".")[0] in FORBIDDEN.get(a.split(".")[0], ())]
    for path in sorted((ROOT / "tomodenoise").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            bad += [(str(path.relative_to(ROOT)), n) for n in names if n.split(".")[0] in FORBIDDEN["tomodenoise"]]
    return sorted(set(bad))


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[tuple[int, str]]:
    """``(lines, "file:function")`` of every function longer than ``limit`` lines."""
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > limit:
                        out.append((n, f"{path.relative_to(ROOT)}:{node.name}"))
    return sorted(out, reverse=True)


def flows_lines() -> int:
    return sum(len(p.read_text().splitlines()) for p in (ROOT / "flows").rglob("*.py"))


def main(argv: list[str]) -> int:
    g = graph()
    found_cycles, arrows, long = cycles(g), back_arrows(g), long_functions()
    print(f"{g.number_of_nodes()} modules, {g.number_of_edges()} import edges")
    print(f"cycles: {len(found_cycles)}")
    for c in found_cycles:
        print("  -", " <-> ".join(c))
    print(f"arrows against the layering: {len(arrows)}")
    for a, b in arrows:
        print(f"  - {a} -> {b}")
    print(f"functions over {MAX_FUNCTION_LINES} lines: {len(long)}")
    for n, where in long:
        print(f"  - {where} ({n} lines)")
    print(f"flows/: {flows_lines()} lines (limit {MAX_FLOWS_LINES})")
    if "--edges" in argv:
        rooms = sorted({(a.split(".")[0] + "." + a.split(".")[1] if a.count(".") else a,
                         b.split(".")[0] + "." + b.split(".")[1] if b.count(".") else b) for a, b in g.edges})
        for a, b in rooms:
            if a != b:
                print(f"  {a} -> {b}")
    return 1 if (found_cycles or arrows or long or flows_lines() >= MAX_FLOWS_LINES) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
