"""List functions, classes and methods that nothing outside their own definition refers to.

Definitions are collected from the packages (tomodenoise/, flows/, tasks/); references are
looked for in the packages and in the code around them (benchmarks/, deploy/, docker/,
scripts/, pyproject.toml). Tests do not count as callers: a name used only by tests is dead.

A reference is a name match, as vulture makes it: a bare name, an attribute (``x.name``), a
keyword argument name, or a string equal to the name (getattr, Prefect entrypoints,
registries) anywhere outside the definition's own body; in files that are not Python (YAML,
shell, Dockerfiles, TOML; Markdown prose is not a caller) any whole-word match counts; dict
keys are field names, not uses. A string in an ``__all__`` list is not
a use: such names are listed apart ("exported only"), to be judged by hand (a public function
documented for notebook users is not dead). Dunder methods, ``forward``, pydantic validators and the
hooks other libraries call (``logging.Handler.emit``, ``httpx`` ``handle_request``, torch
``extra_repr``) are called implicitly and never listed. Names are matched, not bindings: a
name defined twice is used when either is.

Usage: ``python scripts/dead_code.py [--tests]`` (``--tests``: also say which dead names the
tests use).
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

__all__ = ["Definition", "collect_definitions", "collect_references", "dead_definitions", "main"]

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tomodenoise", "flows", "tasks")
CALLERS = PACKAGES + ("benchmarks", "deploy", "docker", "scripts")
EXTRA_FILES = ("pyproject.toml",)
IMPLICIT = {"forward", "setUp", "tearDown", "main"}
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NAME_STRING = re.compile(r"[\w./-]*[\w]+[:.]?[A-Za-z_]\w*")
HOOKS = {"emit", "handle_request", "extra_repr"}  # logging.Handler, httpx transport, torch
PRELOAD = {"dask_setup", "dask_teardown"}  # Dask calls these in a preload module
IMPLICIT_DECORATORS = {"field_validator", "model_validator", "validator", "root_validator"}


class Definition:
    """One function, class or method: its file, line range, qualified name and kind."""

    def __init__(self, path: Path, node: ast.AST, qualname: str, kind: str):
        self.path = path
        self.name = node.name
        self.qualname = qualname
        self.kind = kind
        self.start = node.lineno
        self.end = node.end_lineno
        self.decorators = set()
        for dec in getattr(node, "decorator_list", []):
            self.start = min(self.start, dec.lineno)
            target = dec.func if isinstance(dec, ast.Call) else dec
            self.decorators.add(target.attr if isinstance(target, ast.Attribute)
                                else getattr(target, "id", ""))

    def contains(self, path: Path, line: int) -> bool:
        return path == self.path and self.start <= line <= self.end

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.start}: {self.kind} {self.qualname}"


def _python_files(dirs) -> list[Path]:
    files = []
    for d in dirs:
        base = ROOT / d
        if base.is_dir():
            files += [p for p in sorted(base.rglob("*.py")) if ".venv" not in p.parts]
    return files


def _other_files(dirs) -> list[Path]:
    files = [ROOT / f for f in EXTRA_FILES if (ROOT / f).exists()]
    for d in dirs:
        base = ROOT / d
        if base.is_dir():
            files += [p for p in sorted(base.rglob("*")) if p.is_file() and p.suffix != ".py"
                      and p.suffix not in {".md", ".png", ".pyc", ".h5", ".npy", ".csv", ".json"}]
    return files


def collect_definitions(paths) -> list[Definition]:
    """Every function, class and method defined in ``paths`` (nested functions included)."""
    defs = []

    def visit(node, path, prefix, in_class):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qual = f"{prefix}{child.name}"
                kind = ("class" if isinstance(child, ast.ClassDef)
                        else "method" if in_class else "function")
                defs.append(Definition(path, child, qual, kind))
                visit(child, path, qual + ".", isinstance(child, ast.ClassDef))
            else:
                visit(child, path, prefix, in_class)

    for path in paths:
        visit(ast.parse(path.read_text(), str(path)), path, "", False)
    return defs


def _all_lines(tree: ast.Module) -> set[int]:
    """Lines of the module's ``__all__ = [...]`` (names there are exports, not uses)."""
    lines = set()
    for node in tree.body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            lines.update(range(node.lineno, node.end_lineno + 1))
    return lines


def _string_names(text: str) -> list[str]:
    """The name a string refers to: ``"name"``, ``"pkg.mod.name"`` or ``"path.py:name"``
    (getattr, registries, Prefect entrypoints); prose (docstrings, messages) refers to none."""
    if not NAME_STRING.fullmatch(text):
        return []
    return [WORD.findall(text)[-1]]


def collect_references(py_files, other_files):
    """``{name: [(path, line, exported_only)]}`` for every name used in the given files."""
    refs = defaultdict(list)
    for path in py_files:
        tree = ast.parse(path.read_text(), str(path))
        exports = _all_lines(tree)
        keys = {id(k) for n in ast.walk(tree) if isinstance(n, ast.Dict) for k in n.keys if k}
        for node in ast.walk(tree):
            if id(node) in keys:  # a dict key names a field, not a function
                continue
            names = []
            if isinstance(node, ast.Name):
                names = [node.id]
            elif isinstance(node, ast.Attribute):
                names = [node.attr]
            elif isinstance(node, ast.keyword) and node.arg:
                names = [node.arg]
            elif isinstance(node, ast.alias):
                names = [node.name.split(".")[-1]]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = _string_names(node.value)
            line = getattr(node, "lineno", None)
            if line is None:
                continue
            in_all = isinstance(node, ast.Constant) and line in exports
            for name in names:
                refs[name].append((path, line, in_all))
    for path in other_files:
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for i, line in enumerate(text.splitlines(), 1):
            for name in WORD.findall(line):
                refs[name].append((path, i, False))
    return refs


def dead_definitions(defs, refs):
    """``(dead, exported_only)``: definitions with no use outside their body, and those whose
    only uses are ``__all__`` lists and the imports that re-export them."""
    dead, exported = [], []
    for d in defs:
        if (d.name.startswith("__") and d.name.endswith("__") or d.name in IMPLICIT
                or d.kind == "method" and d.name in HOOKS
                or d.kind == "function" and d.name in PRELOAD or d.decorators & IMPLICIT_DECORATORS):
            continue
        uses = [(p, ln, in_all) for p, ln, in_all in refs.get(d.name, [])
                if not d.contains(p, ln)]
        real = [u for u in uses if not u[2]]
        if not uses:
            dead.append(d)
        elif not real or all(_only_reexport(p, ln, d.name) for p, ln, _ in real):
            exported.append(d)
    return dead, exported


_IMPORT_CACHE: dict[Path, dict[int, bool]] = {}


def _only_reexport(path: Path, line: int, name: str) -> bool:
    """True when the use at ``path:line`` is an import in a package ``__init__`` (a re-export)."""
    if path.name != "__init__.py" or path.suffix != ".py":
        return False
    if path not in _IMPORT_CACHE:
        lines = {}
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for ln in range(node.lineno, node.end_lineno + 1):
                    lines[ln] = True
        _IMPORT_CACHE[path] = lines
    return _IMPORT_CACHE[path].get(line, False)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    defs = collect_definitions(_python_files(PACKAGES))
    refs = collect_references(_python_files(CALLERS), _other_files(CALLERS))
    dead, exported = dead_definitions(defs, refs)
    test_refs = collect_references(_python_files(["tests"]), []) if "--tests" in argv else {}

    def line(d):
        note = " (used by tests)" if d.name in test_refs else ""
        return f"  {d}{note}"

    print(f"{len(defs)} definitions; {len(dead)} never used outside their own body:")
    print("\n".join(line(d) for d in dead))
    print(f"{len(exported)} used only in __all__ lists and package re-exports:")
    print("\n".join(line(d) for d in exported))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
