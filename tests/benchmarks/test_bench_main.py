"""``python -m benchmarks NAME``: the one way to run each benchmark, from the repository root."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import BENCHMARKS, main

REPO = Path(__file__).resolve().parents[2]


def test_foam_help_from_the_repository_root():
    r = subprocess.run([sys.executable, "-m", "benchmarks", "foam", "--help"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage: python -m benchmarks foam" in r.stdout and "--slices" in r.stdout and "--methods" in r.stdout
    r = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and all(name in r.stdout for name in BENCHMARKS)


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_benchmark_has_its_options(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    assert f"usage: python -m benchmarks {name}" in capsys.readouterr().out


def test_an_unknown_benchmark_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["nope"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_no_benchmark_runs_a_second_way():
    """Only the dispatcher is a ``__main__``; benchmarks/dask_worker_probe.py and real_scans/ stay scripts."""
    scripts = {"__main__.py", "dask_worker_probe.py"}
    for path in sorted((REPO / "benchmarks").glob("*.py")):
        if path.name in scripts:
            continue
        tree = ast.parse(path.read_text())
        mains = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
        assert not mains, f"{path.name} runs as a script too: use python -m benchmarks"
    registered = {module for module, _ in BENCHMARKS.values()}
    for module in registered:
        assert (REPO / "benchmarks" / f"{module}.py").is_file(), module


def test_the_library_neither_holds_nor_installs_the_benchmarks():
    import importlib.util
    import tomllib

    from setuptools import find_packages

    assert importlib.util.find_spec("tomodenoise.bench") is None
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    found = find_packages(str(REPO), include=include)
    assert "tomodenoise" in found and not any(p.split(".")[0] == "benchmarks" for p in found)
