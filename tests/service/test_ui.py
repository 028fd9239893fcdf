"""The Prefect UI shows a pipeline run's report: a real server, a real run, a real browser.

A tiny simulated foam scan runs through ``tomodenoise run`` in a subprocess that talks to the
session's ``prefect server start`` (tests/service/conftest.py). The run's artifacts are
checked over the REST API, then Debian's headless ``chromium`` opens the UI:

- ``/runs/flow-run/<id>``: the flow run page (name, state);
- ``/artifacts/artifact/<id>``: the ``report-<scan-id>`` Markdown artifact, rendered: the
  metrics table and the preview embedded as a ``data:image/png`` URI;
- ``/v2/runs/flow-run/<id>?tab=Artifacts``: the new UI's Artifacts tab of the run, listing
  the report and store artifacts.

Screenshots (and the rendered DOM) are kept under ``test-output/ui/`` in the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks.artifacts import ChunkProgress, publish_report
from tomodenoise.api import artifact_key
from tomodenoise.report import MAX_EMBED_BYTES, report_markdown

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "test-output" / "ui"
TOMODENOISE = str(Path(sys.executable).with_name("tomodenoise"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# --- the artifacts module against the real server, in this process ---------------------------
def _fake_store(root: Path, previews: int = 1, reference: bool = True) -> Path:
    """What pipeline.report leaves in ``<store>/report/``: metrics.json and previews."""
    from PIL import Image

    report = root / "report"
    report.mkdir(parents=True)
    m = {"fbp": {"noise_std_estimate": 0.0412}, "denoised": {"best_val_loss": 1.99},
         "split_noise_std": 0.08, "stages": {"ingest": 0.2, "reconstruct": 1.0, "train": 3.5, "denoise": 0.2}}
    if reference:
        m["fbp"].update(psnr=13.57, ssim=0.61)
        m["denoised"].update(psnr=21.25, ssim=0.82)
    (report / "metrics.json").write_text(json.dumps(m))
    rng = np.random.default_rng(0)
    for z in range(previews):  # noisy 960x344 RGB, like matplotlib's three panels at 80 dpi
        pixels = rng.integers(0, 255, (344, 960, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(report / f"preview_z{z:04d}.png")
    return root


def test_artifact_key():
    assert artifact_key("report", "Scan_0042.v2") == "report-scan-0042-v2"
    assert artifact_key("store", "--Ünï--") == "store-n"
    assert artifact_key("store", "___") == "store-scan"


def test_report_markdown_embeds_downscaled_previews_within_budget(tmp_path):
    store = _fake_store(tmp_path / "foam", previews=3)
    md = report_markdown(store, embed_bytes=MAX_EMBED_BYTES)
    assert "| PSNR | 13.57 | 21.25 |" in md and "| SSIM | 0.610 | 0.820 |" in md
    assert "noise std" in md and "| train | 3.5 |" in md and "| **total** | **4.9** |" in md
    assert md.count("](data:image/png;base64,") == 3
    assert len(md) < 1_000_000
    from PIL import Image
    import base64
    import io

    uri = md.split("](data:image/png;base64,", 1)[1].split(")", 1)[0]
    assert Image.open(io.BytesIO(base64.b64decode(uri))).size == (400, 143)  # downscaled
    small = report_markdown(store, embed_bytes=len(uri) + 100)  # room for one preview
    assert small.count("](data:image/png;base64,") == 1
    assert small.count("not embedded") == 2 and str(store / "report" / "preview_z0002.png") in small
    no_ref = report_markdown(_fake_store(tmp_path / "real", previews=0, reference=False), embed_bytes=MAX_EMBED_BYTES)
    assert "| PSNR |" not in no_ref and "No reference given" in no_ref and "noise std" in no_ref


def _artifacts(server, **filters) -> list[dict]:
    with server.client() as http:
        r = http.post("/artifacts/filter", json={"artifacts": filters, "sort": "CREATED_DESC"})
        r.raise_for_status()
        return r.json()


def test_publish_report_and_progress_on_real_server(prefect_server_settings, tmp_path):
    from prefect import flow

    server = prefect_server_settings
    store = _fake_store(tmp_path / "out" / "Unit_Test.Scan 1")

    @flow(name="artifacts-unit-test")
    def publish(store_root: str, chunks: int) -> str:
        publish_report(store_root)
        progress = ChunkProgress(chunks, "unit-test chunks")
        percents = [progress.advance() for _ in range(3)]
        assert percents[-1] == pytest.approx(100 * 3 / chunks)
        return str(progress.artifact_id)

    progress_id = publish(str(store), 7)
    (report,) = _artifacts(server, key={"any_": ["report-unit-test-scan-1"]})
    assert report["type"] == "markdown" and "| PSNR | 13.57 | 21.25 |" in report["data"]
    assert "](data:image/png;base64," in report["data"] and report["flow_run_id"]
    (link,) = _artifacts(server, key={"any_": ["store-unit-test-scan-1"]})
    # Prefect stores a link artifact's data as Markdown, [link_text](link); the link is the plain path.
    assert link["data"] == f"[output store]({store.resolve()})"
    assert link["flow_run_id"] == report["flow_run_id"]
    with server.client() as http:
        data = http.get(f"/artifacts/{progress_id}").json()
    assert data["type"] == "progress" and data["description"] == "unit-test chunks"
    assert data["data"] == pytest.approx(100 * 3 / 7, abs=1)  # sent on whole-percent changes
    assert data["flow_run_id"] == report["flow_run_id"]


# --- a pipeline run, seen in a browser -----------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline_run(prefect_server, tmp_path_factory):
    """``tomodenoise simulate`` + ``tomodenoise run`` in subprocesses against the server."""
    tmp = tmp_path_factory.mktemp("ui-run")
    env = prefect_server.subprocess_env(MPLBACKEND="Agg", OMP_NUM_THREADS="1")

    def run(*args: str) -> None:
        r = subprocess.run([TOMODENOISE, *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (f"tomodenoise {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n"
                                   f"{r.stderr[-5000:]}\nserver log:\n{prefect_server.log_tail()}")

    run("simulate", "foam", "--out", str(tmp / "foam.h5"), "--size", "32", "--angles", "48", "--slices", "3",
        "--spheres", "60", "--i0", "200")
    run("run", str(tmp / "foam.h5"), "--out", str(tmp / "out"), "--reference", str(tmp / "foam_clean.npy"),
        "--set", "train.epochs=2", "--set", "train.patch_size=16", "--set", "train.patches_per_slice=1", "--set", "model.params={depth: 4}",
        "--set", "recon.z_chunk=2", "--set", "output.previews=1", "--set", "compute.cluster=threads",
        "--set", "train.progress=false")
    with prefect_server.client() as http:
        r = http.post("/flow_runs/filter", json={"flows": {"name": {"any_": ["tomodenoise-pipeline"]}},
                                                 "sort": "START_TIME_DESC", "limit": 5})
        r.raise_for_status()
        runs = r.json()
    assert len(runs) == 1, f"expected one pipeline run, got {[(x['name'], x['state_type']) for x in runs]}"
    return {"run": runs[0], "store": (tmp / "out" / "foam").resolve(), "tmp": tmp}


def test_pipeline_run_publishes_artifacts(prefect_server, pipeline_run):
    run, store = pipeline_run["run"], pipeline_run["store"]
    assert run["state_type"] == "COMPLETED"
    (report,) = _artifacts(prefect_server, key={"any_": ["report-foam"]})
    assert report["flow_run_id"] == run["id"] and report["type"] == "markdown"
    assert "tomodenoise report: foam" in report["data"] and "| PSNR |" in report["data"]
    assert report["data"].count("](data:image/png;base64,") == 1  # output.previews=1
    assert len(report["data"]) < 1_000_000
    (link,) = _artifacts(prefect_server, key={"any_": ["store-foam"]})
    assert link["flow_run_id"] == run["id"] and link["data"] == f"[output store]({store})"
    assert (store / "report" / "metrics.json").is_file()
    # The reconstruct subflow's chunk progress reached 100 %.
    progress = _artifacts(prefect_server, type={"any_": ["progress"]})
    assert any(p["description"] == "reconstruction chunks" and p["data"] == 100.0 for p in progress), progress
    assert any(p["description"].startswith("training: share of the budget") and p["data"] == 100.0
               for p in progress), progress


def _chromium(url: str, name: str, tmp: Path, budget_ms: int = 15000) -> str:
    """Load ``url`` headless; keep a screenshot and the rendered DOM in test-output/ui/."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"{name}.png"
    shot.unlink(missing_ok=True)
    cmd = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--hide-scrollbars", "--no-first-run", f"--user-data-dir={tmp / ('chromium-' + name)}",
           "--window-size=1400,1800", f"--virtual-time-budget={budget_ms}", f"--screenshot={shot}",
           "--dump-dom", url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.is_file(), f"chromium failed ({r.returncode}) on {url}:\n{r.stderr[-3000:]}"
    (SHOTS / f"{name}.html").write_text(r.stdout)
    print(f"screenshot of {url}: {shot}")
    return r.stdout


def test_ui_shows_the_report(prefect_server, pipeline_run):
    if CHROMIUM is None:  # CI installs it (.ci/run): there, a missing browser is a failure
        msg = "no chromium executable on PATH (apt-get install chromium)"
        pytest.fail(msg) if os.environ.get("CI") else pytest.skip(msg)
    run, tmp = pipeline_run["run"], pipeline_run["tmp"]
    (report,) = _artifacts(prefect_server, key={"any_": ["report-foam"]})
    ui = prefect_server.ui_url

    dom = _chromium(f"{ui}/runs/flow-run/{run['id']}", "flow-run", tmp)
    assert run["name"] in dom and "Completed" in dom, "the flow run page did not render the run"
    assert "Can't connect to Server API" not in dom

    dom = _chromium(f"{ui}/artifacts/artifact/{report['id']}", "report-artifact", tmp)
    assert "tomodenoise report: foam" in dom and "PSNR" in dom and "SSIM" in dom, "report not rendered"
    assert "noise std" in dom and str(pipeline_run["store"]) in dom
    assert '<img src="data:image/png;base64,' in dom, "the preview image is not in the rendered page"

    # the flow run's Artifacts tab lists the report and the store link (the v1 UI draws them in
    # a canvas graph and drops ?tab= on a fresh load, so the v2 UI's tab is what is checked)
    assert _v2_available(ui), "the UI's /v2 pages are not served"
    dom = _chromium(f"{ui}/v2/runs/flow-run/{run['id']}?tab=Artifacts", "flow-run-artifacts-v2", tmp)
    assert run["name"] in dom and "report-foam" in dom and "store-foam" in dom


def _v2_available(ui: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{ui}/v2/", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False
