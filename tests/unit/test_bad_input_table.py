"""Every kind of bad input through the command line: exit status 2, one sentence, nothing written.

``docs/BAD_INPUT.md`` is generated from these cases (``python scripts/bad_input_table.py``, which
runs them) and :func:`test_the_docs_table_is_current` fails when a message changed without it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import namedtuple
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "BAD_INPUT.md"


class Case(namedtuple("Case", "what argv expect")):
    """``argv(tmp, scan)``: the command line; ``expect``: a piece of the one-line message."""


def _fifo(t: Path, s: Path) -> list[str]:
    os.mkfifo(t / "scan.fifo")
    return ["check", str(t / "scan.fifo")]


def _loop(t: Path, s: Path) -> list[str]:
    (t / "a.h5").symlink_to(t / "b.h5")
    (t / "b.h5").symlink_to(t / "a.h5")
    return ["check", str(t / "a.h5")]


def _file(t: Path, name: str, text: str) -> str:
    (t / name).write_text(text)
    return str(t / name)


def _clash(t: Path, s: Path) -> list[str]:
    from tomodenoise.pipeline import ingest
    from tomodenoise.config import RunConfig

    other = t / "other"
    other.mkdir()
    shutil.copy(s, other / s.name)
    cfg = RunConfig()
    cfg.input.path, cfg.output.root = str(other / s.name), str(t / "out")
    ingest(cfg)
    return ["check", str(s), "--out", str(t / "out")]


def _reference(t: Path, s: Path) -> list[str]:
    np.save(t / "ref.npy", np.zeros((3, 24, 24), np.float32))
    return ["run", str(s), "--no-prefect", "--reference", str(t / "ref.npy")]


def _full_disk(t: Path, s: Path) -> list[str]:
    usage = namedtuple("usage", "total used free")
    shutil.disk_usage = lambda path: usage(10**6, 10**6 - 1000, 1000)  # undone by the runner
    return ["check", str(s)]


def _dead_server(t: Path, s: Path) -> list[str]:
    os.environ["PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # undone by the runner
    return ["run", str(s)]


CASES = [
    Case("scan that does not exist", lambda t, s: ["check", str(t / "nope.h5")], "no such file or folder"),
    Case("a named pipe given as the scan", _fifo, "found a named pipe (FIFO)"),
    Case("a file in no known format", lambda t, s: ["check", _file(t, "scan.txt", "x")], "a scan in a known format"),
    Case("a symbolic link loop", _loop, "symbolic link loop"),
    Case("malformed YAML", lambda t, s: ["check", str(s), "-c", _file(t, "run.yaml", "train: [unclosed\n")],
         "line 2, column 1"),
    Case("an unknown key in the YAML", lambda t, s: ["check", str(s), "-c", _file(t, "run.yaml", "train: {epochz: 3}\n")],
         "unknown key (did you mean epochs?)"),
    Case("--set without =", lambda t, s: ["check", str(s), "--set", "train.epochs"], "train.epochs"),
    Case("--set of an unknown section", lambda t, s: ["check", str(s), "--set", "trian.epochs=3"],
         "is not a configuration section"),
    Case("a value out of range", lambda t, s: ["check", str(s), "--set", "splits.k=1"], "must be >= 2"),
    Case("a value not among the choices", lambda t, s: ["check", str(s), "--set", "recon.algorithm=art"],
         "must be one of 'fbp', 'sirt'"),
    Case("a removed setting", lambda t, s: ["check", str(s), "--set", "splits.scheme=random"],
         "splits.scheme was removed"),
    Case("an unknown network", lambda t, s: ["check", str(s), "--set", "model.name=resnet"], "unknown model 'resnet'"),
    Case("a centre of rotation off the detector", lambda t, s: ["check", str(s), "--set", "preprocess.center=500"],
         "lies outside the detector"),
    Case("more splits than projections", lambda t, s: ["check", str(s), "--set", "splits.k=40"],
         "is more than the 32 projections"),
    Case("a CUDA device on a machine without CUDA", lambda t, s: ["check", str(s), "--set", "train.device=cuda"],
         "no CUDA GPU is available"),
    Case("a store that holds another scan under the same id", _clash, "already holds the results of"),
    Case("a reference volume of the wrong shape", _reference, "does not match the denoised volume"),
    Case("a reference volume that does not exist",
         lambda t, s: ["run", str(s), "--no-prefect", "--reference", str(t / "missing.npy")], "no such file"),
    Case("a disk without room for the store", _full_disk, "free some space or set output.root"),
    Case("a Prefect server that does not answer", _dead_server, "does not answer"),
    Case("the benchmarks asked of the installed command", lambda t, s: ["bench", "foam", "--out", str(t / "b")],
         "python -m benchmarks foam"),
]


def _files(tmp: Path) -> set[str]:
    return {str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()}


def run_case(case: Case, tmp: Path, scan: Path, capsys) -> tuple[list[str], int, str, list[str]]:
    """``(argv, exit status, stderr, files the command wrote)`` of one case, run in this process
    (a run's own log, report/run.log, is not counted)."""
    from tomodenoise.cli import main

    saved = (shutil.disk_usage, os.environ.get("PREFECT_API_URL"))
    try:
        argv = case.argv(tmp, scan)
        if argv[0] == "run" or (argv[0] == "check" and "--out" not in argv):
            argv += ["--out", str(tmp / "out")]
        before = _files(tmp)
        capsys.readouterr()
        rc = main(argv)
        err = capsys.readouterr().err
    finally:
        shutil.disk_usage = saved[0]
        os.environ.pop("PREFECT_API_URL", None)
        if saved[1] is not None:
            os.environ["PREFECT_API_URL"] = saved[1]
    written = sorted(f for f in _files(tmp) - before if not f.endswith("run.log"))
    return argv, rc, err, written


def shown(text: str, tmp: Path, scan: Path) -> str:
    """As the docs show it: the temporary folders as ``<tmp>`` and ``scan.h5``, the ``error:`` prefix off."""
    text = text.replace(str(scan), "scan.h5").replace(str(tmp), "<tmp>")
    return re.sub(r"\s+", " ", text).strip().removeprefix("error: ")


def render(rows: list[tuple[str, str, str]]) -> str:
    lines = ["# Bad input: what each case says", "",
             "Generated from `tests/unit/test_bad_input_table.py` by `python scripts/bad_input_table.py`; the",
             "test fails when a message changes without this page. Every case exits with status 2, prints",
             "one sentence on stderr and writes nothing (a `run` keeps its `report/run.log`). Warnings for",
             "input that is legal but almost surely wrong are tested in",
             "`tests/unit/pipeline/test_input_warnings.py`.", "",
             "| input | command | message |", "|---|---|---|"]
    lines += [f"| {what} | `{cmd}` | {msg.replace('|', '/')} |" for what, cmd, msg in rows]
    return "\n".join(lines) + "\n"


def collect(scan: Path, tmp_root: Path, capsys, check: Callable | None = None) -> list[tuple[str, str, str]]:
    """Every case run: ``(what, command, message)`` rows; ``check(case, rc, error lines, written)``."""
    rows = []
    for i, case in enumerate(CASES):
        tmp = tmp_root / f"case{i}"
        tmp.mkdir()
        argv, rc, err, written = run_case(case, tmp, scan, capsys)
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        if check is not None:
            check(case, rc, lines, err, written)
        cmd = "tomodenoise " + " ".join(shown(a, tmp, scan) for a in argv)
        rows.append((case.what, cmd, shown(lines[-1] if lines else err, tmp, scan)))
    return rows


def _one_sentence_exit_2(case: Case, rc: int, lines: list[str], err: str, written: list[str]) -> None:
    assert rc == 2, (case.what, rc, err)
    assert len(lines) == 1 and case.expect in lines[0], (case.what, err)
    assert "Traceback" not in err and "validation error" not in err and "<unicode string>" not in err, err
    assert not written, (case.what, written)


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    from tomodenoise.simulate.scan import simulate_foam_scan

    d = tmp_path_factory.mktemp("bad-input-scan")
    return simulate_foam_scan(d / "foam.h5", size=24, n_angles=32, n_slices=2, i0=200.0, seed=7,
                              n_spheres=30)["scan"]


def test_every_bad_input_exits_2_with_one_sentence_and_the_docs_table_is_current(scan, tmp_path, capsys, request):
    import torch

    if torch.cuda.is_available():  # the CUDA case is not bad input on a GPU machine
        pytest.skip("a GPU machine: the case of a CUDA device without CUDA cannot be made here")
    rows = collect(scan, tmp_path, capsys, check=_one_sentence_exit_2)
    if request.config.getoption("--write-bad-input-table"):
        DOC.write_text(render(rows))
    assert DOC.exists() and DOC.read_text() == render(rows), \
        "docs/BAD_INPUT.md is out of date: run python scripts/bad_input_table.py"
