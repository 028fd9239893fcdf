"""Smoke test of benchmarks/recon_scaling.py (``python -m benchmarks recon_scaling``) end to end on a
tiny scan (no speed assertions).

It checks that the benchmark ran its three variants and that the flow runs reconstructed
exactly the work the baseline timed (same arrays), not that any speed target is met.
"""

import json
from pathlib import Path

import numpy as np

# Import Prefect (and its logging handlers) at collection time, not first inside the test
# (see tests/flow/conftest.py).
import prefect  # noqa: F401

from benchmarks import recon_scaling as rs


def test_recon_scaling_smoke(tmp_path):
    out = tmp_path / "bench"
    res = rs.run_recon_scaling(rs.parse_args(["--size", "32", "--angles", "48", "--slices", "4", "--z-chunk", "2",
                                              "--k", "2", "--repeats", "1", "--n-spheres", "40", "--no-warmup",
                                              "--out", str(out)]))

    top = json.loads((out / "recon_scaling.json").read_text())
    assert list(top["scans"]) == ["custom"]  # --size/--angles/--slices: one custom scan, no presets
    data = top["scans"]["custom"]
    assert data["summary"] == json.loads(json.dumps(res["scans"]["custom"]["summary"]))
    n_chunks = data["work"]["n_chunks"]
    assert n_chunks == 2 * 2  # 2 splits x 2 z-slabs
    assert data["work"]["tasks"] == {"1": 2, "2": 4}  # 4 chunks in ~3 tasks per worker: groups of 2, of 1
    for variant in ("baseline", "flow1", "flow2"):
        runs = data["runs"][variant]
        assert len(runs) == 1
        assert all(r["seconds"] > 0 for r in runs)
        assert data["summary"]["median_seconds"][variant] > 0
    for variant in ("flow1", "flow2"):
        for r in data["runs"][variant]:
            assert r["chunks_written"] == n_chunks
            assert r["allclose_baseline"] is True
            assert r["zero_chunk_seconds"] > 0
    for variant in ("raw_pool1", "raw_pool2"):  # the no-orchestration ceiling, same arrays
        assert data["runs"][variant][0]["allclose_baseline"] is True
    assert data["summary"]["raw_pool_scaling_2_over_1"] > 0
    # CPU seconds by role: the flows' FBPs ran in worker processes, the baseline's in this one
    cpu = data["summary"]["median_cpu_seconds"]
    assert cpu["flow1"]["workers"] > 0 and cpu["flow2"]["workers"] > 0
    assert cpu["baseline"]["this process"] > 0 and cpu["baseline"]["workers"] == 0
    assert data["check"]["all_match"] is True and top["check"]["all_match"] is True
    for key in ("flow1_over_baseline", "scaling_2_over_1"):
        assert data["summary"][key] > 0  # computed; the targets are not asserted (no timing tests)
    # the stage target, per flow: stage vs raw seconds, the limit 1.1 x raw + 5 s, the start-up apart
    for variant in ("flow1", "flow2"):
        t = data["summary"]["stage_target"][variant]
        assert t["stage_s"] == data["summary"]["median_seconds"][variant]
        assert t["raw_s"] == data["summary"]["median_seconds"]["baseline"]
        assert abs(t["limit_s"] - (1.1 * t["raw_s"] + 5.0)) < 1e-9
        assert t["pass"] == (t["stage_s"] <= t["limit_s"]) and t["startup_estimate_s"] is not None
    assert top["stage_target_pass"] == all(t["pass"] for t in data["summary"]["stage_target"].values())
    assert top["machine"]["cpu_count"] >= 1 and top["loadavg_before"] is not None
    assert " -m benchmarks recon_scaling --size 32 " in top["command"]

    # Independently: the store's reconstruction (written by the last flow run) is the baseline's.
    from tomodenoise import pipeline
    from tomodenoise.io.store import ScanStore

    store = ScanStore(data["scan"]["store"])
    cfg = rs.make_config(Path(data["scan"]["path"]), out / "store", rs.parse_args(
        ["--k", "2", "--z-chunk", "2"]))
    _, baseline = rs.run_baseline(store, cfg, pipeline.recon_chunks(store, cfg))
    rec = np.asarray(store.array("recon")[:], dtype=np.float32)
    assert rec.shape == baseline.shape == (2, 1, 1, 4, 32, 32)
    assert np.isfinite(rec).all()
    assert np.allclose(rec, baseline, rtol=1e-5)
