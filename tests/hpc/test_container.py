"""The CPU image (docker/Dockerfile.cpu) built with podman here and used as a non-root uid.

The tier builds the image with ``scripts/hpc/podman install|setup|base|build`` (in the
background from its start: tests/hpc/conftest.py; the base image made locally from Debian packages, the build with this machine's pip configuration: no registry but
Debian's and PyPI's). Then, as uid 1000: ``import astra`` and a CPU FBP with the image's cuFFT
stand-in, and

(a) ``tomodenoise run`` on a scan simulated on the host and mounted read-only, its output
    written to a mounted folder: exit 0, every file it wrote readable by the group;
(b) ``prefect server start`` in the container serving its UI: HTTP 200 on ``/`` from the host
    through the published port;
(c) a server + worker pair in one podman pod (deploy/compose.yaml without PostgreSQL), the
    deployments registered with ``prefect deploy`` as the compose file's ``deploy`` service
    does, and a flow run submitted from the host with ``tomodenoise.api.Client`` through the
    published port, which completes with its store in the mounted output folder.

Each step's time is printed at the end of the module (``-s`` or the terminal summary).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from _images import image_build, unavailable

REPO = Path(__file__).resolve().parents[2]
PODMAN_SCRIPT = REPO / "scripts" / "hpc" / "podman"
UID = "1000:1000"
AUTH = "tomodenoise:container-s3cret"
TINY = {
    "recon": {"z_chunk": 2},
    "model": {"name": "msd", "params": {"depth": 4, "width": 1}},
    "train": {"epochs": 2, "patch_size": 16, "patches_per_slice": 1, "progress": False},
    "output": {"previews": 1},
    "compute": {"cluster": "threads", "n_workers": 2},
}
TIMES: dict[str, float] = {}
RUN_LABEL = uuid.uuid4().hex[:8]  # every container and pod of this module carries it


def _podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        pytest.fail(f"podman {' '.join(args[:3])} ... failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _not_group_readable(root: Path) -> list[str]:
    bad = []
    for p in [root, *root.rglob("*")]:
        mode = p.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        need = stat.S_IRGRP | (stat.S_IXGRP if stat.S_ISDIR(mode) else 0)
        if mode & need != need:
            bad.append(f"{p.relative_to(root)} {stat.filemode(mode)}")
    return bad


@pytest.fixture(scope="module")
def image(request) -> str:
    """The image, built by scripts/hpc/podman (each step timed); containers and pods of this
    module removed at the end."""
    if os.geteuid() != 0:
        unavailable("podman builds here need root (storage, mmdebstrap)")
    if not shutil.which("podman") and not shutil.which("apt-get"):
        unavailable("no podman and no apt-get to install it")
    version = next(line.split('"')[1] for line in (REPO / "pyproject.toml").read_text().splitlines()
                   if line.startswith("version"))
    tag = f"tomodenoise-cpu:{version}"
    t0 = time.monotonic()
    r = subprocess.run([str(PODMAN_SCRIPT), "install"], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.fail(f"scripts/hpc/podman install failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    build = image_build(request.config)  # started at collection, beside the SLURM tests
    TIMES.update(build.times)
    TIMES["waited for the build"] = time.monotonic() - t0
    if build.failure:
        pytest.fail(build.failure)
    TIMES["image size (GB)"] = int(_podman("image", "inspect", "--format", "{{.Size}}", tag).stdout) / 1e9
    yield tag
    mine = f"label=org.tomodenoise.test={RUN_LABEL}"
    for what, listing in (("pod", ["pod", "ls", "--format", "{{.Name}}"]),
                          ("container", ["ps", "-a", "--format", "{{.Names}}"])):
        for name in _podman(*listing, "--filter", mine, check=False).stdout.split():
            _podman(what, "rm", "-f", name, check=False, timeout=60)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("container tier timings: " + ", ".join(
            f"{k} {v:.2f}" if "GB" in k else f"{k} {v:.0f} s" for k, v in TIMES.items()))


def _label() -> list[str]:
    return ["--label", f"org.tomodenoise.test={RUN_LABEL}"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """A tiny scan simulated on the host (`tomodenoise simulate`, as root with umask 022), the
    tiny run configuration beside it, and an output folder owned by uid 1000."""
    tmp = tmp_path_factory.mktemp("container")
    raw, out = tmp / "raw", tmp / "out"
    raw.mkdir()
    out.mkdir()
    os.chown(out, 1000, 1000)
    exe = Path(sys.executable).with_name("tomodenoise")
    r = subprocess.run([str(exe), "simulate", "foam", "--out", str(raw / "scan.h5"), "--size", "32",
                        "--angles", "48", "--slices", "3", "--i0", "200", "--spheres", "50", "--seed", "5"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not _not_group_readable(raw), _not_group_readable(raw)
    (raw / "tiny.yml").write_text(yaml.safe_dump(TINY))
    return {"raw": raw, "out": out}


ASTRA_FBP = """
import numpy as np, astra
assert not astra.use_cuda()
vg = astra.create_vol_geom(32, 32)
pg = astra.create_proj_geom("parallel", 1.0, 48, np.linspace(0, np.pi, 48, endpoint=False))
pid = astra.create_projector("linear", pg, vg)
img = np.zeros((32, 32), np.float32); img[10:20, 12:22] = 1
sid, _ = astra.create_sino(img, pid)
rid = astra.data2d.create("-vol", vg)
cfg = astra.astra_dict("FBP"); cfg.update(ReconstructionDataId=rid, ProjectionDataId=sid, ProjectorId=pid)
aid = astra.algorithm.create(cfg); astra.algorithm.run(aid)
err = float(np.abs(astra.data2d.get(rid) - img).mean())
assert err < 0.05, err
print("fbp-ok", err)
"""


def test_astra_cpu_fbp_with_the_cufft_stand_in(image):
    """`import astra` and a CPU FBP work with the image's cuFFT stand-in (docker/cufft_stub.c)."""
    r = _podman("run", "--rm", *_label(), "--user", UID, image, "python", "-c", ASTRA_FBP, timeout=120, check=False)
    assert r.returncode == 0 and "fbp-ok" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    size = _podman("run", "--rm", *_label(), image, "sh", "-c",
                   'du -sk "$(python -c \'import sysconfig; print(sysconfig.get_path("purelib"))\')/nvidia/cufft"').stdout
    assert int(size.split()[0]) < 1024, size  # the stand-in (15 kB), not the 279 MB library


def test_run_as_non_root_on_a_mounted_scan(image, data):
    out = data["out"] / "cli"
    out.mkdir()
    os.chown(out, 1000, 1000)
    t0 = time.monotonic()
    r = _podman("run", "--rm", *_label(), "--user", UID,
                "-v", f"{data['raw']}:/data/raw:ro", "-v", f"{out}:/data/out", image,
                "tomodenoise", "run", "/data/raw/scan.h5", "--out", "/data/out", "-c", "/data/raw/tiny.yml",
                timeout=600, check=False)
    TIMES["(a) tomodenoise run"] = time.monotonic() - t0
    assert r.returncode == 0, f"tomodenoise run in the container failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    store = out / "scan"
    assert (store / "scan.zarr" / "zarr.json").exists(), sorted(p.name for p in out.rglob("*"))[:50]
    assert (store / "report" / "run.log").exists()
    assert {p.stat().st_uid for p in store.rglob("*")} == {1000}
    assert _not_group_readable(store) == []


@pytest.fixture(scope="module")
def pod(image, data):
    """A podman pod with the Prefect server (port published on 127.0.0.1) and a worker, as
    deploy/compose.yaml without PostgreSQL (the server's SQLite in its home)."""
    name, port = f"tomodenoise-test-{RUN_LABEL}", _free_port()
    out = data["out"] / "service"
    out.mkdir()
    os.chown(out, 1000, 1000)
    t0 = time.monotonic()
    _podman("pod", "create", *_label(), "--name", name, "-p", f"127.0.0.1:{port}:4200")
    client_env = ["-e", "PREFECT_API_URL=http://127.0.0.1:4200/api", "-e", f"PREFECT_API_AUTH_STRING={AUTH}"]
    _podman("run", "-d", *_label(), "--pod", name, "--name", f"{name}-server", "--user", UID,
            "-e", f"PREFECT_SERVER_API_AUTH_STRING={AUTH}", "-e", f"PREFECT_UI_API_URL=http://127.0.0.1:{port}/api",
            "-e", "PREFECT_SERVER_ANALYTICS_ENABLED=false",
            image, "prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            logs = _podman("logs", f"{name}-server", check=False)
            pytest.fail(f"the server in the pod did not answer in 180 s:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")
        time.sleep(1)
    TIMES["(b) server up"] = time.monotonic() - t0
    _podman("run", "-d", *_label(), "--pod", name, "--name", f"{name}-worker", "--user", UID, *client_env,
            "-e", "TOMODENOISE_INPUT_ROOTS=/data/raw", "-e", "PREFECT_WORKER_QUERY_SECONDS=2",
            "-v", f"{data['raw']}:/data/raw:ro", "-v", f"{out}:/data/out",
            image, "prefect", "worker", "start", "--pool", "tomodenoise", "--type", "process")
    yield {"name": name, "url": url, "out": out}


def _logs(pod) -> str:
    text = ""
    for part in ("server", "worker"):
        r = _podman("logs", f"{pod['name']}-{part}", check=False)
        text += f"--- {part}:\n{(r.stdout + r.stderr)[-3000:]}\n"
    return text


def test_server_serves_its_ui(pod):
    r = httpx.get(pod["url"] + "/", timeout=30, follow_redirects=True)
    assert r.status_code == 200, (r.status_code, r.text[:300], _logs(pod))
    assert "<html" in r.text.lower() and "<script" in r.text.lower(), r.text[:300]
    # the API itself still asks for the credentials
    assert httpx.post(pod["url"] + "/api/deployments/filter", json={}, timeout=30).status_code == 401


def test_flow_run_submitted_from_outside_completes(pod, image):
    from tomodenoise.api import Client

    t0 = time.monotonic()
    # the compose file's `deploy` service (its command and environment), in the pod
    service = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())["services"]["deploy"]
    env = {**service["environment"], "PREFECT_API_URL": "http://127.0.0.1:4200/api", "PREFECT_API_AUTH_STRING": AUTH}
    _podman("run", "--rm", *_label(), "--pod", pod["name"], "--user", UID,
            *[f"--env={k}={v}" for k, v in env.items()], image, *service["command"], timeout=300)
    TIMES["(c) prefect deploy"] = time.monotonic() - t0
    assert env["TOMODENOISE_OUTPUT_ROOT"] == "/data/out"
    t0 = time.monotonic()
    with Client(pod["url"] + "/api", auth=AUTH) as api:
        run_id = api.start_run("/data/raw/scan.h5", overrides=TINY, roots=[])
        try:
            final = api.wait(run_id, timeout=420)
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{_logs(pod)}")
    TIMES["(c) flow run"] = time.monotonic() - t0
    assert final["state"] == "COMPLETED", (final, _logs(pod))
    assert final["store"] == "/data/out/scan"
    store = pod["out"] / "scan"
    assert (store / "scan.zarr" / "zarr.json").exists()
    assert (store / "report" / "metrics.json").exists()
    assert _not_group_readable(store) == []
